//! The DataStream API: typed streams, chained stateless operators, exchanges, keyed
//! processing and sinks.

use crate::graph::{ChannelPool, Graph, Wire, WorkerCtx};
use crate::keyed::{
    process_each, KeyedBatchFunction, KeyedNode, KeyedProcessFunction, ProcessBatch,
};
use crate::runtime::async_node::{AsyncNode, AsyncParts};
use crate::runtime::chain::{
    BatchFn, BatchMapFn, FilterFn, FlatMapFn, InspectFn, MapFn, SinkNode, SplitFn, SplitNode,
    Stateless, TryMapFn,
};
use crate::runtime::exchange::{BatchExchange, KeyedExchange, Outbox, Route};
use crate::runtime::gate::InputGate;
use crate::runtime::task::ChannelTask;
use crate::runtime::Next;
use crate::{AsyncConfig, AsyncFunction, Result, Sink, SinkContext};
use ferroflow_state::{StateKey, StoreScope};
use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;

type NameCell = Arc<Mutex<String>>;

/// Sets an operator's name to `uid` and notes it, so that a second use is reported.
fn set_uid(graph: &Arc<Mutex<Graph>>, cell: &NameCell, uid: String) {
    let mut g = graph.lock();
    if g.uids.contains(&uid) {
        g.errors.push(format!(
            "two operators have the uid `{uid}`: a uid names one operator"
        ));
    } else {
        g.uids.push(uid.clone());
    }
    *cell.lock() = uid;
}

/// The end of a stream, as [`DataStream::sink`] returns it: to name the sink or give it a
/// stable id.
pub struct SinkStream {
    graph: Arc<Mutex<Graph>>,
    name: NameCell,
}

impl SinkStream {
    /// Names the sink (in metrics, logs and checkpoints).
    pub fn name(self, name: impl Into<String>) -> Self {
        *self.name.lock() = name.into();
        self
    }

    /// Gives the sink a stable id, under which checkpoints keep what it prepared and has
    /// not committed yet (see [`DataStream::uid`]).
    pub fn uid(self, uid: impl Into<String>) -> Self {
        set_uid(&self.graph, &self.name, uid.into());
        self
    }
}

/// A typed stream of records. Operators consume the stream and return a new one; a stream
/// ends in a [`Sink`].
///
/// Stateless operators (`map`, `filter`, `flat_map`, `inspect`) are chained: they run as
/// plain calls on the worker that produced the records. Records change workers only at
/// an exchange: `key_by`, `rebalance`, `global` and `union`.
pub struct DataStream<T> {
    pub(crate) graph: Arc<Mutex<Graph>>,
    pub(crate) stage: usize,
    pub(crate) wire: Wire<T>,
    pub(crate) name: NameCell,
}

/// A stream partitioned by key: every record of a key goes to the same worker, which owns
/// the key's state. Produced by [`DataStream::key_by`].
pub struct KeyedStream<K, T> {
    inner: DataStream<(K, T)>,
}

impl<T: Send + 'static> DataStream<T> {
    pub(crate) fn new(graph: Arc<Mutex<Graph>>, stage: usize, wire: Wire<T>, name: String) -> Self {
        Self::with_name_cell(graph, stage, wire, Arc::new(Mutex::new(name)))
    }

    /// A stream whose last operator's name is `name`, which its wire reads when tasks are
    /// built (so that a later `name` or `uid` reaches them).
    pub(crate) fn with_name_cell(
        graph: Arc<Mutex<Graph>>,
        stage: usize,
        wire: Wire<T>,
        name: NameCell,
    ) -> Self {
        Self {
            graph,
            stage,
            wire,
            name,
        }
    }

    /// Names the last operator (in metrics, logs and task names). The name is also the
    /// operator's identity in checkpoints: see [`Self::uid`].
    #[must_use]
    pub fn name(self, name: impl Into<String>) -> Self {
        *self.name.lock() = name.into();
        self
    }

    /// Gives the last operator a stable id: its name in metrics and logs, and the name
    /// its state, split positions and pending commits are stored under in checkpoints
    /// and savepoints. Without one, operators are named by kind and position
    /// (`process#4`), which shifts when the job's code adds or removes an operator
    /// before it; with one, a new version of the job finds the state of each operator
    /// whose uid it keeps. Two operators with one uid fail the job at start.
    #[must_use]
    pub fn uid(self, uid: impl Into<String>) -> Self {
        set_uid(&self.graph, &self.name, uid.into());
        self
    }

    /// Sets the number of workers of the chain this stream belongs to (from its source or
    /// last exchange up to its next exchange or sink). Defaults to the environment's.
    #[must_use]
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        {
            let mut g = self.graph.lock();
            if parallelism == 0 {
                g.errors
                    .push("set_parallelism(0): parallelism must be at least 1".into());
            } else if let Some(s) = g.stages.get_mut(self.stage) {
                s.parallelism = Some(parallelism);
            }
        }
        self
    }

    /// Transforms each record.
    ///
    /// ```
    /// # use ferroflow_core::{StreamEnvironment, sinks::CollectSink};
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(1);
    /// let out = CollectSink::new();
    /// env.from_iter(vec![1, 2, 3]).map(|x| x * 10).sink(out.clone());
    /// env.execute()?;
    /// assert_eq!(out.sorted(), vec![10, 20, 30]);
    /// # Ok(()) }
    /// ```
    pub fn map<U, F>(self, f: F) -> DataStream<U>
    where
        U: Send + 'static,
        F: Fn(T) -> U + Send + Sync + 'static,
    {
        self.stateless("map", MapFn(f))
    }

    /// Transforms each record with a function that may fail; an error stops the job.
    pub fn try_map<U, F>(self, f: F) -> DataStream<U>
    where
        U: Send + 'static,
        F: Fn(T) -> Result<U> + Send + Sync + 'static,
    {
        self.stateless("try_map", TryMapFn(f))
    }

    /// Keeps the records for which `predicate` is true.
    ///
    /// ```
    /// # use ferroflow_core::{StreamEnvironment, sinks::CollectSink};
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(2);
    /// let out = CollectSink::new();
    /// env.from_iter(1..=10).filter(|x| x % 2 == 0).sink(out.clone());
    /// env.execute()?;
    /// assert_eq!(out.sorted(), vec![2, 4, 6, 8, 10]);
    /// # Ok(()) }
    /// ```
    pub fn filter<F>(self, predicate: F) -> DataStream<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.stateless("filter", FilterFn(predicate))
    }

    /// Turns each record into zero or more records.
    ///
    /// ```
    /// # use ferroflow_core::{StreamEnvironment, sinks::CollectSink};
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(1);
    /// let out = CollectSink::new();
    /// env.from_iter(vec!["a b", "c"])
    ///     .flat_map(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>())
    ///     .sink(out.clone());
    /// env.execute()?;
    /// assert_eq!(out.sorted(), vec!["a", "b", "c"]);
    /// # Ok(()) }
    /// ```
    pub fn flat_map<U, I, F>(self, f: F) -> DataStream<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U>,
        F: Fn(T) -> I + Send + Sync + 'static,
    {
        self.stateless("flat_map", FlatMapFn(f))
    }

    /// Transforms each micro-batch as a whole: `f` gets the records of one batch and
    /// returns the records to pass on. Batches never span a checkpoint barrier or a
    /// watermark, so whatever `f` combines within a batch (a local pre-aggregation before
    /// an exchange, say) needs no state of its own.
    ///
    /// ```
    /// use ferroflow_core::{sinks::CollectSink, StreamEnvironment};
    ///
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(1);
    /// let out = CollectSink::new();
    /// env.from_iter(vec![1, 2, 3])
    ///     .map_batch(|batch: Vec<i32>| vec![batch.iter().sum::<i32>()])
    ///     .sink(out.clone());
    /// env.execute()?;
    /// assert_eq!(out.sorted().iter().sum::<i32>(), 6);
    /// # Ok(()) }
    /// ```
    pub fn map_batch<U, F>(self, f: F) -> DataStream<U>
    where
        U: Send + 'static,
        F: Fn(Vec<T>) -> Vec<U> + Send + Sync + 'static,
    {
        self.stateless("map_batch", BatchMapFn(f))
    }

    /// Calls `f` on each record and passes it on unchanged.
    pub fn inspect<F>(self, f: F) -> DataStream<T>
    where
        F: Fn(&T) + Send + Sync + 'static,
    {
        self.stateless("inspect", InspectFn(f))
    }

    fn stateless<U: Send + 'static>(self, kind: &str, op: impl BatchFn<T, U>) -> DataStream<U> {
        let op: Arc<dyn BatchFn<T, U>> = Arc::new(op);
        let name = self.graph.lock().op_name(kind);
        let cell: NameCell = Arc::new(Mutex::new(name));
        let upstream = self.wire;
        let my_name = Arc::clone(&cell);
        let wire: Wire<U> = Arc::new(move |ctx: &WorkerCtx, next: Next<U>| {
            let metrics = ctx.register_metrics(&my_name.lock());
            upstream(
                ctx,
                Box::new(Stateless::new(Arc::clone(&op), next, metrics)),
            )
        });
        DataStream {
            graph: self.graph,
            stage: self.stage,
            wire,
            name: cell,
        }
    }

    /// Runs `function`, whose work completes later (lookups, uploads), on every record: its
    /// calls run on the job's I/O runtime while the worker goes on; at most
    /// `config.capacity` calls are in flight per worker. See [`AsyncFunction`] and
    /// [`OnBarrier`](crate::OnBarrier) for what checkpoints do with calls in flight. Each
    /// worker runs its own clone of `function`.
    ///
    /// # Panics
    /// Never; an invalid `config` fails the job at start with the reason.
    pub fn process_async<F>(self, function: F, config: AsyncConfig) -> DataStream<F::Out>
    where
        F: AsyncFunction<In = T> + Clone,
        T: Clone + Serialize + DeserializeOwned,
    {
        if let Err(e) = config.validate() {
            self.graph.lock().errors.push(e.to_string());
        }
        let name = self.graph.lock().op_name("async");
        let cell: NameCell = Arc::new(Mutex::new(name));
        let my_name = Arc::clone(&cell);
        let upstream = self.wire;
        let function = Mutex::new(function);
        let wire: Wire<F::Out> = Arc::new(move |ctx: &WorkerCtx, next: Next<F::Out>| {
            let operator = my_name.lock().clone();
            let parts = AsyncParts {
                f: function.lock().clone(),
                config: config.clone(),
                restored: ctx.restore().operator_states(&operator),
                metrics: ctx.register_metrics(&operator),
                operator,
                worker: ctx.worker,
                parallelism: ctx.parallelism,
                max_parallelism: ctx.config.max_parallelism,
                control: Arc::clone(&ctx.control),
                io: Arc::clone(&ctx.io),
            };
            upstream(ctx, Box::new(AsyncNode::new(parts, next)?))
        });
        DataStream {
            graph: self.graph,
            stage: self.stage,
            wire,
            name: cell,
        }
    }

    /// Partitions the stream by key: records with equal keys go to the same worker, which
    /// owns their state. `key` is hashed into one of `max_parallelism` key groups; each
    /// worker owns a contiguous range of key groups.
    pub fn key_by<K, F>(self, key: F) -> KeyedStream<K, T>
    where
        K: StateKey,
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        self.keyed("key_by", move |record: T| (key(&record), record))
    }

    /// Partitions by key through an exchange that makes a `(key, value)` pair of each
    /// record with `split`.
    fn keyed<K, V, F>(self, name: &str, split: F) -> KeyedStream<K, V>
    where
        K: StateKey,
        V: Send + 'static,
        F: Fn(T) -> (K, V) + Send + Sync + 'static,
    {
        let split = Arc::new(split);
        let inner = self.exchange::<(K, V)>(name, move |ctx, outbox, metrics| {
            Box::new(KeyedExchange::new(
                outbox,
                Arc::clone(&split),
                ctx.config.max_parallelism,
                metrics,
            ))
        });
        KeyedStream { inner }
    }

    /// Spreads batches over the workers of the next chain in turn.
    pub fn rebalance(self) -> DataStream<T> {
        self.exchange::<T>("rebalance", |ctx, outbox, metrics| {
            let start = ctx.worker % outbox.targets();
            Box::new(BatchExchange::new(
                outbox,
                Route::RoundRobin(start),
                metrics,
            ))
        })
    }

    /// Sends every record to a single worker (the next chain runs with parallelism 1).
    pub fn global(self) -> DataStream<T> {
        let out = self.exchange::<T>("global", |_ctx, outbox, metrics| {
            Box::new(BatchExchange::new(outbox, Route::Fixed(0), metrics))
        });
        out.set_parallelism(1)
    }

    /// Merges two streams of the same type. The result runs in a new chain fed by both
    /// (worker `i` to worker `i` when parallelisms match, in turn otherwise); its watermark
    /// is the minimum of both inputs'.
    pub fn union(self, other: DataStream<T>) -> DataStream<T> {
        if !Arc::ptr_eq(&self.graph, &other.graph) {
            self.graph
                .lock()
                .errors
                .push("union of streams from different environments".into());
        }
        let graph = Arc::clone(&self.graph);
        let name = graph.lock().op_name("union");
        let pools = vec![ChannelPool::<T>::shared(), ChannelPool::<T>::shared()];
        let to = graph.lock().add_stage(name.clone(), None);
        for (input, pool) in [self, other].into_iter().zip(&pools) {
            input.finish_with_exchange(to, pool, |ctx, outbox, metrics| {
                let route = forward(ctx, outbox.targets());
                Box::new(BatchExchange::new(outbox, route, metrics))
            });
        }
        channel_stage(graph, to, name, pools)
    }

    /// Splits the stream in two: records that `f` maps to `Ok` go on in this chain,
    /// records it maps to `Err` go to the second stream (a side output: records given up
    /// on, dead letters). The side stream runs in a chain of its own, fed by an exchange
    /// (worker `i` to worker `i` when parallelisms match); watermarks, barriers and the
    /// end of input reach both. Both streams must end in a sink.
    ///
    /// ```
    /// use ferroflow_core::{sinks::CollectSink, StreamEnvironment};
    ///
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(2);
    /// let (numbers, words) = (CollectSink::new(), CollectSink::new());
    /// let (n, w) = env
    ///     .from_iter(["1", "two", "3"].map(String::from))
    ///     .split(|s: String| s.parse::<u32>().map_err(|_| s));
    /// n.sink(numbers.clone());
    /// w.sink(words.clone());
    /// env.execute()?;
    /// assert_eq!((numbers.sorted(), words.sorted()), (vec![1, 3], vec!["two".to_string()]));
    /// # Ok(()) }
    /// ```
    pub fn split<A, B, F>(self, f: F) -> (DataStream<A>, DataStream<B>)
    where
        A: Send + 'static,
        B: Send + 'static,
        F: Fn(T) -> std::result::Result<A, B> + Send + Sync + 'static,
    {
        let graph = Arc::clone(&self.graph);
        let (side_name, main_name, exchange_name, to) = {
            let mut g = graph.lock();
            let side_name = g.op_name("side_output");
            let main_name = g.op_name("split");
            let exchange_name = g.op_name("exchange");
            let to = g.add_stage(side_name.clone(), None);
            (side_name, main_name, exchange_name, to)
        };
        let pool = ChannelPool::<B>::shared();
        graph.lock().exchanges.push(crate::graph::Exchange {
            from: self.stage,
            to,
            prepare: ChannelPool::preparer(&pool),
        });
        let f: Arc<SplitFn<T, A, B>> = Arc::new(f);
        let upstream = self.wire;
        let side_pool = Arc::clone(&pool);
        let wire: Wire<A> = Arc::new(move |ctx: &WorkerCtx, next: Next<A>| {
            let (outbox, metrics) = outbox(ctx, &side_pool, &exchange_name)?;
            let route = forward(ctx, outbox.targets());
            let side: Next<B> = Box::new(BatchExchange::new(outbox, route, metrics));
            upstream(
                ctx,
                Box::new(SplitNode {
                    f: Arc::clone(&f),
                    main: next,
                    side,
                }),
            )
        });
        let main = DataStream::new(Arc::clone(&graph), self.stage, wire, main_name);
        let side = channel_stage(graph, to, side_name, vec![pool]);
        (main, side)
    }

    /// Ends the stream in `sink`. Each worker runs its own clone of `sink`. The returned
    /// handle names the sink, or gives it a stable [`uid`](SinkStream::uid).
    pub fn sink<S>(self, sink: S) -> SinkStream
    where
        S: Sink<T> + Clone,
    {
        let name = self.graph.lock().op_name(&format!("sink:{}", sink.name()));
        let cell: NameCell = Arc::new(Mutex::new(name));
        let my_name = Arc::clone(&cell);
        let wire = self.wire;
        let graph = Arc::clone(&self.graph);
        graph.lock().finish_stage(
            self.stage,
            Box::new(move |ctx: &WorkerCtx| {
                let name = my_name.lock().clone();
                let metrics = ctx.register_metrics(&name);
                let restored_commits = ctx.restore().sink_commits(&name);
                let sink_ctx = SinkContext {
                    worker: ctx.worker,
                    parallelism: ctx.parallelism,
                    attempt: ctx.attempt,
                    restored_commits,
                    checkpoint_interval: ctx.checkpoint.as_ref().map(|h| h.config.interval),
                };
                wire(
                    ctx,
                    Box::new(SinkNode::new(sink.clone(), name, sink_ctx, metrics)),
                )
            }),
        );
        SinkStream { graph, name: cell }
    }

    /// Ends this stream's stage in an exchange into a new stage; returns the stream there.
    fn exchange<M: Send + 'static>(
        self,
        kind: &str,
        tail: impl Fn(&WorkerCtx, Outbox<M>, Arc<crate::metrics::OperatorMetrics>) -> Next<T>
            + Send
            + Sync
            + 'static,
    ) -> DataStream<M> {
        let graph = Arc::clone(&self.graph);
        let name = graph.lock().op_name(kind);
        let to = graph.lock().add_stage(name.clone(), None);
        let pool = ChannelPool::<M>::shared();
        self.finish_with_exchange(to, &pool, tail);
        channel_stage(graph, to, name, vec![pool])
    }

    fn finish_with_exchange<M: Send + 'static>(
        self,
        to: usize,
        pool: &Arc<Mutex<ChannelPool<M>>>,
        tail: impl Fn(&WorkerCtx, Outbox<M>, Arc<crate::metrics::OperatorMetrics>) -> Next<T>
            + Send
            + Sync
            + 'static,
    ) {
        let mut g = self.graph.lock();
        let exchange_name = g.op_name("exchange");
        g.exchanges.push(crate::graph::Exchange {
            from: self.stage,
            to,
            prepare: ChannelPool::preparer(pool),
        });
        let pool = Arc::clone(pool);
        let wire = self.wire;
        g.finish_stage(
            self.stage,
            Box::new(move |ctx: &WorkerCtx| {
                let (outbox, metrics) = outbox(ctx, &pool, &exchange_name)?;
                wire(ctx, tail(ctx, outbox, metrics))
            }),
        );
    }
}

/// This worker's outbox into the exchange whose channels `pool` holds, with the job's
/// batching, and the exchange's metrics.
fn outbox<M: Send + 'static>(
    ctx: &WorkerCtx,
    pool: &Arc<Mutex<ChannelPool<M>>>,
    exchange: &str,
) -> Result<(Outbox<M>, Arc<crate::metrics::OperatorMetrics>)> {
    let senders = pool.lock().take_senders(ctx.worker)?;
    let metrics = ctx.register_metrics(exchange);
    let outbox = Outbox::new(
        senders,
        ctx.config.batch_size,
        ctx.config.linger,
        Arc::clone(&ctx.control),
        Arc::clone(&metrics),
    );
    Ok((outbox, metrics))
}

/// Worker `i` to worker `i` when both sides have as many workers, in turn otherwise.
fn forward(ctx: &WorkerCtx, targets: usize) -> Route {
    if targets == ctx.parallelism {
        Route::Fixed(ctx.worker)
    } else {
        Route::RoundRobin(ctx.worker % targets)
    }
}

/// The stream at the head of a stage fed by channels.
fn channel_stage<M: Send + 'static>(
    graph: Arc<Mutex<Graph>>,
    stage: usize,
    name: String,
    pools: Vec<Arc<Mutex<ChannelPool<M>>>>,
) -> DataStream<M> {
    let stage_name = name.clone();
    let wire: Wire<M> = Arc::new(move |ctx: &WorkerCtx, chain: Next<M>| {
        let mut receivers = Vec::new();
        for pool in &pools {
            receivers.extend(pool.lock().take_receivers(ctx.worker)?);
        }
        Ok(Box::new(ChannelTask::new(
            ctx.task_name(&stage_name),
            InputGate::new(receivers),
            chain,
            ctx.task_checkpoint(),
            ctx.register_metrics(&stage_name),
        )))
    });
    DataStream::new(graph, stage, wire, name)
}

impl<K: StateKey, V: Send + 'static> DataStream<(K, V)> {
    /// Partitions a stream of `(key, value)` pairs by their keys, as `key_by` would, but
    /// moves each key into the exchange instead of computing and cloning it: the keyed
    /// function receives the value and finds the key in its context. For records whose
    /// key is large or costly to build, made once upstream (an expansion into many keyed
    /// counts, say), this halves what crosses the exchange.
    ///
    /// ```
    /// use ferroflow_core::{sinks::CollectSink, StreamEnvironment};
    /// # use ferroflow_core::{Collector, KeyedContext, KeyedProcessFunction, Result};
    /// # #[derive(Clone)]
    /// # struct Tag;
    /// # impl KeyedProcessFunction for Tag {
    /// #     type Key = String;
    /// #     type In = u32;
    /// #     type Out = String;
    /// #     fn process(&mut self, v: u32, ctx: &mut KeyedContext<'_, String>,
    /// #                out: &mut Collector<'_, String>) -> Result<()> {
    /// #         out.collect(format!("{}={v}", ctx.key()));
    /// #         Ok(())
    /// #     }
    /// # }
    ///
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(2);
    /// let out = CollectSink::new();
    /// env.from_iter([("a".to_string(), 1u32), ("b".to_string(), 2)])
    ///     .key_by_pair()
    ///     .process(Tag)
    ///     .sink(out.clone());
    /// env.execute()?;
    /// assert_eq!(out.sorted(), vec!["a=1".to_string(), "b=2".to_string()]);
    /// # Ok(()) }
    /// ```
    pub fn key_by_pair(self) -> KeyedStream<K, V> {
        self.keyed("key_by", |pair: (K, V)| pair)
    }
}

impl<K: StateKey, T: Send + 'static> KeyedStream<K, T> {
    /// Runs `function` on every record with the record's key in scope (keyed state and
    /// timers). Each worker runs its own clone of `function`.
    ///
    /// ```
    /// use ferroflow_core::{
    ///     Collector, KeyedContext, KeyedProcessFunction, OpenContext, Result,
    ///     StreamEnvironment, sinks::CollectSink,
    /// };
    /// use ferroflow_state::ValueState;
    ///
    /// /// Running count per word.
    /// #[derive(Clone, Default)]
    /// struct Count { seen: Option<ValueState<u64>> }
    ///
    /// impl KeyedProcessFunction for Count {
    ///     type Key = String;
    ///     type In = String;
    ///     type Out = (String, u64);
    ///     fn open(&mut self, ctx: &mut OpenContext<'_, String>) -> Result<()> {
    ///         self.seen = Some(ctx.value_state("seen")?);
    ///         Ok(())
    ///     }
    ///     fn process(&mut self, _w: String, ctx: &mut KeyedContext<'_, String>,
    ///                out: &mut Collector<'_, (String, u64)>) -> Result<()> {
    ///         let Some(seen) = self.seen else { return Ok(()) };
    ///         let n = seen.get_or_insert_with(ctx, || 0)?;
    ///         *n += 1;
    ///         let n = *n;
    ///         out.collect((ctx.key().clone(), n));
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> ferroflow_core::Result<()> {
    /// let env = StreamEnvironment::local(2);
    /// let out = CollectSink::new();
    /// env.from_iter(["a", "b", "a"].map(String::from))
    ///     .key_by(|w| w.clone())
    ///     .process(Count::default())
    ///     .sink(out.clone());
    /// env.execute()?;
    /// assert_eq!(out.sorted(), vec![("a".into(), 1), ("a".into(), 2), ("b".into(), 1)]);
    /// # Ok(()) }
    /// ```
    pub fn process<F>(self, function: F) -> DataStream<F::Out>
    where
        F: KeyedProcessFunction<Key = K, In = T> + Clone,
    {
        self.keyed_node(function, process_each::<F>)
    }

    /// Runs `function`, which takes each micro-batch from the keyed exchange whole
    /// ([`KeyedBatchFunction`]): the fast path of operators such as the UV count. A
    /// function written for users' jobs is a [`KeyedProcessFunction`] run with
    /// [`KeyedStream::process`].
    pub fn process_batched<F>(self, function: F) -> DataStream<F::Out>
    where
        F: KeyedBatchFunction<Key = K, In = T> + Clone,
    {
        self.keyed_node(function, <F as KeyedBatchFunction>::process_batch)
    }

    fn keyed_node<F>(self, function: F, process: ProcessBatch<F>) -> DataStream<F::Out>
    where
        F: KeyedProcessFunction<Key = K, In = T> + Clone,
    {
        let inner = self.inner;
        let name = inner.graph.lock().op_name("process");
        let cell: NameCell = Arc::new(Mutex::new(name));
        let my_name = Arc::clone(&cell);
        let upstream = inner.wire;
        // Functions need not be `Sync`; each worker gets a clone made under this lock.
        let function = Mutex::new(function);
        let wire: Wire<F::Out> = Arc::new(move |ctx: &WorkerCtx, next: Next<F::Out>| {
            let op = my_name.lock().clone();
            let scope = StoreScope::new(
                op.clone(),
                ctx.worker,
                ctx.parallelism,
                ctx.config.max_parallelism,
            );
            let store = ctx.restore().keyed_store(ctx.backend.as_ref(), &scope)?;
            let metrics = ctx.register_metrics(&op);
            let node = KeyedNode::new(function.lock().clone(), process, store, next, metrics)?;
            upstream(ctx, Box::new(node))
        });
        DataStream {
            graph: inner.graph,
            stage: inner.stage,
            wire,
            name: cell,
        }
    }

    /// Runs an [`AsyncFunction`] over the `(key, record)` pairs on the worker that owns
    /// each key, so that per-key work (a cache of lookups by key, say) stays with the
    /// key's worker: each worker sees only the keys of its key groups. See
    /// [`DataStream::process_async`].
    pub fn process_async<F>(self, function: F, config: AsyncConfig) -> DataStream<F::Out>
    where
        F: AsyncFunction<In = (K, T)> + Clone,
        K: Serialize + DeserializeOwned,
        T: Clone + Serialize + DeserializeOwned,
    {
        self.inner.process_async(function, config)
    }

    /// Sets the number of workers of the keyed chain.
    #[must_use]
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        Self {
            inner: self.inner.set_parallelism(parallelism),
        }
    }
}
