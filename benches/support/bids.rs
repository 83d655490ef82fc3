//! The bids of the Nexmark benchmark's event stream, from the `nexmark` crate's
//! generator, as a source.

use ferroflow::prelude::*;
use ferroflow::{SplitReader, SplitStatus};
use nexmark::event::{Bid, Event, EventType};
use nexmark::EventGenerator;

/// The bids of the Nexmark stream: one split per worker, each taking every `p`-th bid.
pub struct Bids {
    /// How many bids, over every split.
    pub total: u64,
}

impl Source for Bids {
    type Item = Bid;

    fn create_splits(&mut self, parallelism: usize) -> Result<Vec<Box<dyn SplitReader<Bid>>>> {
        let p = parallelism.max(1) as u64;
        Ok((0..p)
            .map(|i| {
                let generator = EventGenerator::default()
                    .with_type_filter(EventType::Bid)
                    .with_offset(i)
                    .with_step(p);
                let left = self.total / p + u64::from(i < self.total % p);
                Box::new(BidSplit { generator, left }) as Box<dyn SplitReader<Bid>>
            })
            .collect())
    }
}

struct BidSplit {
    generator: EventGenerator,
    left: u64,
}

impl SplitReader<Bid> for BidSplit {
    fn poll(&mut self, max: usize, out: &mut Vec<Bid>) -> Result<SplitStatus> {
        let n = (max as u64).min(self.left);
        for _ in 0..n {
            if let Some(Event::Bid(bid)) = self.generator.next() {
                out.push(bid);
            }
        }
        self.left -= n;
        Ok(if self.left == 0 {
            SplitStatus::Finished
        } else {
            SplitStatus::More
        })
    }
}
