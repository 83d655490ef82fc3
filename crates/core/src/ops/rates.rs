//! Per-second rates from two samples of the job's counters, and where backpressure
//! starts: what `/jobs` shows.

use super::status::Topology;
use crate::metrics::OperatorSnapshot;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

/// Counters and rates of one operator, on one worker or over all of them.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Figures {
    pub(crate) records_in: u64,
    pub(crate) records_out: u64,
    pub(crate) records_in_per_s: f64,
    pub(crate) records_out_per_s: f64,
    pub(crate) busy_ms_per_s: f64,
    pub(crate) idle_ms_per_s: f64,
    pub(crate) backpressured_ms_per_s: f64,
    pub(crate) backpressure_events: u64,
    pub(crate) backpressured_ms: u64,
    pub(crate) watermark: Option<i64>,
}

/// One operator on one worker.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct WorkerView {
    pub(crate) worker: usize,
    #[serde(flatten)]
    pub(crate) figures: Figures,
}

/// One operator: its workers summed (counts, rates), worst (busy, backpressure),
/// averaged (idle) or lowest (watermark).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct OperatorView {
    pub(crate) name: String,
    #[serde(flatten)]
    pub(crate) figures: Figures,
    pub(crate) workers: Vec<WorkerView>,
}

/// A stage of the job graph.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageView {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) parallelism: usize,
    pub(crate) operators: Vec<OperatorView>,
}

/// Where backpressure starts: the most downstream exchange whose channels are full,
/// and the stages it feeds (the slow ones).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Located {
    pub(crate) exchange: String,
    pub(crate) stage: String,
    pub(crate) into: Vec<String>,
    pub(crate) backpressured_ms_per_s: f64,
    pub(crate) backpressure_events: u64,
    pub(crate) blocked_ms_total: u64,
}

/// A backpressured share of time above this (per mille of each second) counts.
const BACKPRESSURED_MS_PER_S: f64 = 100.0;

/// The two newest samples of the counters.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    prev: Option<(Instant, Vec<OperatorSnapshot>)>,
    last: Option<(Instant, Vec<OperatorSnapshot>)>,
}

impl Rates {
    pub(crate) fn sample(&mut self, now: Instant, snapshot: Vec<OperatorSnapshot>) {
        self.prev = self.last.take();
        self.last = Some((now, snapshot));
    }

    /// Each operator's counters and rates over the last sampling interval.
    pub(crate) fn operators(&self) -> HashMap<String, OperatorView> {
        let Some((t1, now)) = &self.last else {
            return HashMap::new();
        };
        let before: HashMap<(&str, usize), &OperatorSnapshot> = self
            .prev
            .as_ref()
            .map(|(_, v)| {
                v.iter()
                    .map(|s| ((s.operator.as_str(), s.worker), s))
                    .collect()
            })
            .unwrap_or_default();
        let secs = self
            .prev
            .as_ref()
            .map_or(0.0, |(t0, _)| t1.duration_since(*t0).as_secs_f64());
        let mut ops: HashMap<String, OperatorView> = HashMap::new();
        for s in now {
            let w = WorkerView {
                worker: s.worker,
                figures: figures(
                    s,
                    before.get(&(s.operator.as_str(), s.worker)).copied(),
                    secs,
                ),
            };
            let op = ops
                .entry(s.operator.clone())
                .or_insert_with(|| OperatorView {
                    name: s.operator.clone(),
                    ..OperatorView::default()
                });
            let (o, f) = (&mut op.figures, &w.figures);
            o.records_in += f.records_in;
            o.records_out += f.records_out;
            o.records_in_per_s += f.records_in_per_s;
            o.records_out_per_s += f.records_out_per_s;
            o.busy_ms_per_s = o.busy_ms_per_s.max(f.busy_ms_per_s);
            o.idle_ms_per_s += f.idle_ms_per_s;
            o.backpressured_ms_per_s = o.backpressured_ms_per_s.max(f.backpressured_ms_per_s);
            o.backpressure_events += f.backpressure_events;
            o.backpressured_ms += f.backpressured_ms;
            o.watermark = match (o.watermark, f.watermark) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            op.workers.push(w);
        }
        for op in ops.values_mut() {
            #[allow(clippy::cast_precision_loss)]
            let workers = op.workers.len().max(1) as f64;
            op.figures.idle_ms_per_s /= workers;
        }
        ops
    }
}

fn figures(now: &OperatorSnapshot, before: Option<&OperatorSnapshot>, secs: f64) -> Figures {
    let per_s = |a: u64, b: u64| {
        if secs > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let d = a.saturating_sub(b) as f64;
            d / secs
        } else {
            0.0
        }
    };
    let ms_per_s = |a: std::time::Duration, b: std::time::Duration| {
        if secs > 0.0 {
            a.saturating_sub(b).as_secs_f64() * 1000.0 / secs
        } else {
            0.0
        }
    };
    let zero = OperatorSnapshot::default();
    let b = before.unwrap_or(&zero);
    Figures {
        records_in: now.records_in,
        records_out: now.records_out,
        records_in_per_s: per_s(now.records_in, b.records_in),
        records_out_per_s: per_s(now.records_out, b.records_out),
        busy_ms_per_s: ms_per_s(now.busy, b.busy).min(1000.0),
        idle_ms_per_s: ms_per_s(now.idle, b.idle).min(1000.0),
        backpressured_ms_per_s: ms_per_s(now.backpressure, b.backpressure).min(1000.0),
        backpressure_events: now.backpressure_events,
        backpressured_ms: u64::try_from(now.backpressure.as_millis()).unwrap_or(u64::MAX),
        watermark: now.watermark,
    }
}

/// The stages with their operators' views, in graph order.
pub(crate) fn stages(
    topology: &Topology,
    operators_of: impl Fn(usize) -> Vec<String>,
    mut views: HashMap<String, OperatorView>,
) -> Vec<StageView> {
    topology
        .stages
        .iter()
        .enumerate()
        .map(|(index, (name, parallelism))| StageView {
            index,
            name: name.clone(),
            parallelism: *parallelism,
            operators: operators_of(index)
                .into_iter()
                .map(|op| {
                    views.remove(&op).unwrap_or_else(|| OperatorView {
                        name: op,
                        ..OperatorView::default()
                    })
                })
                .collect(),
        })
        .collect()
}

/// The most downstream backpressured exchange: its stage's successors are where the
/// job is slow. An exchange is the last operator of its stage.
pub(crate) fn locate(topology: &Topology, stages: &[StageView]) -> Option<Located> {
    let pressed = |s: &StageView| -> bool {
        s.operators
            .last()
            .is_some_and(|o| o.figures.backpressured_ms_per_s >= BACKPRESSURED_MS_PER_S)
            && topology.edges.iter().any(|(from, _)| *from == s.index)
    };
    let mut found: Option<&StageView> = None;
    // Follow backpressured exchanges downstream until the next stage is not pressed.
    for s in stages.iter().filter(|s| pressed(s)) {
        let downstream_pressed = topology
            .edges
            .iter()
            .filter(|(from, _)| *from == s.index)
            .any(|(_, to)| stages.get(*to).is_some_and(pressed));
        if !downstream_pressed {
            found = Some(s);
            break;
        }
    }
    let s = found?;
    let ex = s.operators.last()?;
    Some(Located {
        exchange: ex.name.clone(),
        stage: s.name.clone(),
        into: topology
            .edges
            .iter()
            .filter(|(from, _)| *from == s.index)
            .filter_map(|(_, to)| stages.get(*to).map(|t| t.name.clone()))
            .collect(),
        backpressured_ms_per_s: ex.figures.backpressured_ms_per_s,
        backpressure_events: ex.figures.backpressure_events,
        blocked_ms_total: ex.figures.backpressured_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snap(
        op: &str,
        worker: usize,
        n: u64,
        busy_ms: u64,
        idle_ms: u64,
        bp_ms: u64,
    ) -> OperatorSnapshot {
        OperatorSnapshot {
            operator: op.into(),
            worker,
            records_in: n,
            records_out: n,
            busy: Duration::from_millis(busy_ms),
            backpressure: Duration::from_millis(bp_ms),
            idle: Duration::from_millis(idle_ms),
            backpressure_events: bp_ms / 10,
            watermark: Some(1_000 + i64::try_from(worker).unwrap_or(0)),
        }
    }

    #[test]
    fn rates_aggregate_per_operator_and_backpressure_is_located() {
        let t0 = Instant::now();
        let mut rates = Rates::default();
        rates.sample(
            t0,
            vec![
                snap("source#1", 0, 0, 0, 0, 0),
                snap("exchange#2", 0, 0, 0, 0, 0),
                snap("exchange#2", 1, 0, 0, 0, 0),
                snap("sink#4", 0, 0, 0, 0, 0),
            ],
        );
        rates.sample(
            t0 + Duration::from_secs(2),
            vec![
                snap("source#1", 0, 2_000, 200, 100, 0),
                snap("exchange#2", 0, 2_000, 20, 0, 1_600),
                snap("exchange#2", 1, 4_000, 40, 400, 400),
                snap("sink#4", 0, 6_000, 1_900, 0, 0),
            ],
        );
        let views = rates.operators();
        let ex = &views["exchange#2"].figures;
        assert_eq!(ex.records_in, 6_000);
        assert!((ex.records_in_per_s - 3_000.0).abs() < 1e-6);
        assert!(
            (ex.backpressured_ms_per_s - 800.0).abs() < 1e-6,
            "the worst worker"
        );
        assert!(
            (ex.idle_ms_per_s - 100.0).abs() < 1e-6,
            "the mean of 0 and 200"
        );
        assert_eq!(ex.watermark, Some(1_000), "the lowest");
        let topology = Topology {
            stages: vec![("source#1".into(), 2), ("key_by#3".into(), 1)],
            edges: vec![(0, 1)],
        };
        let names = |s: usize| match s {
            0 => vec!["source#1".to_string(), "exchange#2".to_string()],
            _ => vec!["key_by#3".to_string(), "sink#4".to_string()],
        };
        let stages = stages(&topology, names, views);
        assert_eq!(
            stages[1].operators[0].figures.records_in, 0,
            "never sampled"
        );
        let located = locate(&topology, &stages).unwrap();
        assert_eq!(located.exchange, "exchange#2");
        assert_eq!(located.into, vec!["key_by#3".to_string()]);
        assert_eq!(located.blocked_ms_total, 2_000);
        assert_eq!(located.backpressure_events, 200);
    }
}
