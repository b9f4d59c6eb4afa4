//! The decisions inside their attribution windows: what a deployment's memory grows with.
//!
//! Decisions arrive in time order and their windows close in the same order, so they live in a
//! queue of fixed-size chunks (each chunk's slots and, beside them, their contexts' numbers),
//! found by id through a map from the id to the slot's position. A slot is 56 bytes, the map's
//! entry 24 (about 50 at hashbrown's load after a doubling), the context its numbers and
//! nothing more (no allocation per decision): about 146 bytes per waiting decision with a
//! 5-number context, against 247 when each decision was a map value owning a boxed context.
//! Chunks are given back as the windows close, so memory follows the open windows down.
//!
//! A reward spends the context (the policy learns from it once); a slot leaves the map when its
//! decision is done with (rewarded at the close of its window, or rewarded with the default),
//! and its chunk is freed once every slot in it is gone and the window has passed them.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

/// Slots per chunk.
const CHUNK: usize = 4096;

/// A decision inside its attribution window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    id: Uuid,
    pub(crate) ts: i64,
    /// The reward received, NaN while none has (rewards are finite: checked on the way in).
    reward: f64,
    /// The context's numbers in the chunk's `ctx`; `ctx_len` 0 once spent by a reward.
    ctx_at: u32,
    ctx_len: u32,
    /// Index into the variants; `u32::MAX` for no action (a unit of a no-action control group).
    variant: u32,
    /// Index into the serving arms; `u32::MAX` for a variant that is not one (control).
    arm: u32,
    pub(crate) hold: bool,
    /// Still in the map (not yet done with).
    live: bool,
}

impl Waiting {
    pub(crate) fn reward(&self) -> Option<f64> {
        (!self.reward.is_nan()).then_some(self.reward)
    }

    pub(crate) fn arm(&self) -> Option<usize> {
        (self.arm != u32::MAX).then_some(self.arm as usize)
    }

    /// The variant decided; `None` for no action.
    pub(crate) fn variant(&self) -> Option<usize> {
        (self.variant != u32::MAX).then_some(self.variant as usize)
    }
}

/// A new waiting decision, for [`WaitingSet::insert`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewWaiting {
    pub(crate) ts: i64,
    pub(crate) variant: Option<usize>,
    pub(crate) arm: Option<usize>,
    pub(crate) hold: bool,
    pub(crate) reward: Option<f64>,
}

#[derive(Debug, Clone, Default)]
struct Chunk {
    slots: Vec<Waiting>,
    ctx: Vec<f64>,
}

/// The waiting decisions of one deployment, in the order they came.
#[derive(Debug, Clone, Default)]
pub(crate) struct WaitingSet {
    /// Id -> absolute position of its slot.
    index: HashMap<Uuid, u64>,
    chunks: VecDeque<Chunk>,
    /// Absolute position of `chunks[0]`'s first slot.
    base: u64,
    /// Absolute position of the first slot not yet passed by [`WaitingSet::next_expired`].
    cursor: u64,
    /// Decisions in the map without a reward.
    unrewarded: usize,
    /// Metrics other than the decision metric received for waiting decisions (only those that
    /// got some have an entry, so a slot stays 56 bytes): for each, (metric, value), the metric
    /// by its position in `metric_names`, which only grows.
    metrics: HashMap<Uuid, MetricValues>,
    metric_names: Vec<String>,
}

/// A waiting decision's metric values: (position of the metric's name, value).
pub(crate) type MetricValues = Vec<(u16, f64)>;

impl WaitingSet {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Decisions still waiting for their reward.
    pub(crate) fn unrewarded(&self) -> usize {
        self.unrewarded
    }

    pub(crate) fn contains(&self, id: &Uuid) -> bool {
        self.index.contains_key(id)
    }

    fn end(&self) -> u64 {
        self.base + self.chunks.iter().map(|c| c.slots.len() as u64).sum::<u64>()
    }

    fn locate(&self, pos: u64) -> (usize, usize) {
        let rel = (pos - self.base) as usize;
        (rel / CHUNK, rel % CHUNK)
    }

    fn slot(&self, pos: u64) -> &Waiting {
        let (c, s) = self.locate(pos);
        &self.chunks[c].slots[s]
    }

    fn slot_mut(&mut self, pos: u64) -> &mut Waiting {
        let (c, s) = self.locate(pos);
        &mut self.chunks[c].slots[s]
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<&Waiting> {
        self.index.get(id).map(|pos| self.slot(*pos))
    }

    /// Adds a decision with its context (a decision already waiting under the same id is
    /// replaced).
    pub(crate) fn insert(&mut self, id: Uuid, new: NewWaiting, x: &[f64]) {
        self.remove(&id);
        if self.chunks.back().is_none_or(|c| c.slots.len() == CHUNK) {
            if let Some(full) = self.chunks.back_mut() {
                full.ctx.shrink_to_fit();
            }
            self.chunks.push_back(Chunk {
                slots: Vec::with_capacity(CHUNK),
                ctx: Vec::with_capacity(CHUNK * x.len()),
            });
        }
        let pos = self.end();
        let chunk = self.chunks.back_mut().expect("a chunk with room was just ensured");
        let reward = new.reward.unwrap_or(f64::NAN);
        chunk.slots.push(Waiting {
            id,
            ts: new.ts,
            reward,
            ctx_at: chunk.ctx.len() as u32,
            ctx_len: x.len() as u32,
            variant: new.variant.map_or(u32::MAX, |v| v as u32),
            arm: new.arm.map_or(u32::MAX, |a| a as u32),
            hold: new.hold,
            live: true,
        });
        chunk.ctx.extend_from_slice(x);
        self.index.insert(id, pos);
        if reward.is_nan() {
            self.unrewarded += 1;
        }
    }

    /// The context kept for `id` (empty once a reward spent it).
    #[cfg(test)]
    fn context(&self, id: &Uuid) -> &[f64] {
        match self.index.get(id) {
            Some(pos) => {
                let (c, s) = self.locate(*pos);
                let w = &self.chunks[c].slots[s];
                &self.chunks[c].ctx[w.ctx_at as usize..(w.ctx_at + w.ctx_len) as usize]
            }
            None => &[],
        }
    }

    /// Records the reward of `id` and spends its context: the decision and the context, for
    /// the policy's one update (`None` when `id` is not waiting).
    pub(crate) fn reward(&mut self, id: &Uuid, r: f64) -> Option<(Waiting, &[f64])> {
        let pos = *self.index.get(id)?;
        let (c, s) = self.locate(pos);
        let chunk = &mut self.chunks[c];
        let w = &mut chunk.slots[s];
        if w.reward.is_nan() {
            self.unrewarded -= 1;
        }
        w.reward = r;
        let spent = *w;
        w.ctx_len = 0;
        let x = &chunk.ctx[spent.ctx_at as usize..(spent.ctx_at + spent.ctx_len) as usize];
        Some((spent, x))
    }

    /// Forgets `id`; its slot's memory goes with its chunk once the window has passed it.
    pub(crate) fn remove(&mut self, id: &Uuid) -> Option<Waiting> {
        let pos = self.index.remove(id)?;
        self.metrics.remove(id);
        let w = self.slot_mut(pos);
        w.live = false;
        let w = *w;
        if w.reward.is_nan() {
            self.unrewarded -= 1;
        }
        self.free_front();
        Some(w)
    }

    /// Frees the chunks the window has passed whose every slot is gone.
    fn free_front(&mut self) {
        // A chunk's positions stay reserved once it is freed (the next one starts a whole chunk
        // later), so positions keep mapping to chunks by division.
        while let Some(first) = self.chunks.front() {
            let passed = self.cursor >= self.base + first.slots.len() as u64;
            if !(passed && first.slots.iter().all(|w| !w.live)) {
                break;
            }
            self.chunks.pop_front();
            self.base += CHUNK as u64;
            self.cursor = self.cursor.max(self.base);
        }
    }

    /// The next decision whose window (`window_ms` after it) closed by `now`, in the order
    /// they came: its id, once (the caller then rewards it with the default or removes it).
    /// Stops at the first decision whose window is still open.
    pub(crate) fn next_expired(&mut self, now: i64, window_ms: i64) -> Option<Uuid> {
        let end = self.end();
        while self.cursor < end {
            let w = *self.slot(self.cursor);
            if !w.live {
                self.cursor += 1;
                continue;
            }
            if w.ts.saturating_add(window_ms) > now {
                return None;
            }
            self.cursor += 1;
            return Some(w.id);
        }
        self.free_front();
        None
    }

    /// Every waiting decision in the order they came, with its unspent context, and whether the
    /// window has passed it (its close is under way).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Waiting, &[f64], bool)> {
        let base = self.base;
        let cursor = self.cursor;
        self.chunks.iter().enumerate().flat_map(move |(c, chunk)| {
            chunk
                .slots
                .iter()
                .enumerate()
                .filter(|(_, w)| w.live)
                .map(move |(s, w)| {
                    let x = &chunk.ctx[w.ctx_at as usize..(w.ctx_at + w.ctx_len) as usize];
                    (w, x, (base + (c * CHUNK + s) as u64) < cursor)
                })
        })
    }

    /// Ids as they came.
    pub(crate) fn id_of(w: &Waiting) -> Uuid {
        w.id
    }

    /// Adds a decision the window has already passed (a state carried into a new revision keeps
    /// which closes are under way): it is not offered by [`WaitingSet::next_expired`] again.
    pub(crate) fn insert_passed(&mut self, id: Uuid, new: NewWaiting, x: &[f64]) {
        let at_cursor = self.cursor == self.end();
        self.insert(id, new, x);
        if at_cursor {
            self.cursor = self.end();
        }
    }

    /// The value of metric `name` received for `id`, if any.
    pub(crate) fn metric(&self, id: &Uuid, name: &str) -> Option<f64> {
        let at = self.metric_names.iter().position(|n| n == name)?;
        let values = self.metrics.get(id)?;
        values.iter().find(|(m, _)| usize::from(*m) == at).map(|(_, v)| *v)
    }

    /// Every metric received for `id`, by name.
    pub(crate) fn metrics_of(&self, id: &Uuid) -> impl Iterator<Item = (&str, f64)> {
        self.metrics
            .get(id)
            .into_iter()
            .flatten()
            .map(|(m, v)| (self.metric_names[usize::from(*m)].as_str(), *v))
    }

    /// Records metric `name` of the waiting decision `id`; false (and nothing changed) when
    /// `id` is not waiting or already has a value for it.
    pub(crate) fn set_metric(&mut self, id: &Uuid, name: &str, value: f64) -> bool {
        if !self.index.contains_key(id) || self.metric(id, name).is_some() {
            return false;
        }
        let at = match self.metric_names.iter().position(|n| n == name) {
            Some(at) => at,
            None => {
                self.metric_names.push(name.to_string());
                self.metric_names.len() - 1
            }
        };
        // Names come from specs, whose metrics are few; a deployment that ever declared more
        // than 65,535 names keeps counting them, but forgets which decision had which.
        let Ok(at) = u16::try_from(at) else { return true };
        self.metrics.entry(*id).or_default().push((at, value));
        true
    }

    /// Waiting decisions with metrics, for a snapshot: the metric names (by position) and
    /// each decision's values.
    pub(crate) fn metric_table(&self) -> (&[String], &HashMap<Uuid, MetricValues>) {
        (&self.metric_names, &self.metrics)
    }

    /// Puts back a snapshot's metric names (before its values, [`WaitingSet::restore_metric`]).
    pub(crate) fn restore_metric_names(&mut self, names: Vec<String>) {
        self.metric_names = names;
    }

    /// Puts back one value of a snapshot; false when the metric's position is not a known name.
    pub(crate) fn restore_metric(&mut self, id: Uuid, at: u16, value: f64) -> bool {
        if usize::from(at) >= self.metric_names.len() || !self.index.contains_key(&id) {
            return false;
        }
        self.metrics.entry(id).or_default().push((at, value));
        true
    }

    /// Gives back the map's memory after a campaign's windows closed (rarely: amortised).
    pub(crate) fn shrink(&mut self) {
        if self.index.capacity() > 4096 && self.index.len() * 4 < self.index.capacity() {
            self.index.shrink_to_fit();
            self.chunks.shrink_to_fit();
            self.metrics.shrink_to_fit();
        }
    }
}

impl PartialEq for WaitingSet {
    /// The same decisions in the same order, with the same rewards (by their bits: NaN, no
    /// reward yet, equals NaN) and unspent contexts.
    fn eq(&self, other: &WaitingSet) -> bool {
        self.len() == other.len()
            && self.iter().zip(other.iter()).all(|((a, xa, pa), (b, xb, pb))| {
                a.id == b.id
                    && a.ts == b.ts
                    && a.reward.to_bits() == b.reward.to_bits()
                    && a.variant == b.variant
                    && a.arm == b.arm
                    && a.hold == b.hold
                    && xa == xb
                    && pa == pb
                    && self.metrics_of(&a.id).collect::<Vec<_>>() == other.metrics_of(&b.id).collect::<Vec<_>>()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(ts: i64) -> NewWaiting {
        NewWaiting {
            ts,
            variant: Some(1),
            arm: Some(0),
            hold: false,
            reward: None,
        }
    }

    fn id(i: u64) -> Uuid {
        Uuid::from_u128(u128::from(i) + 1)
    }

    #[test]
    fn decisions_are_found_rewarded_once_and_forgotten() {
        let mut set = WaitingSet::default();
        set.insert(id(1), new(10), &[1.0, 2.0]);
        set.insert(id(2), new(20), &[3.0, 4.0]);
        assert_eq!((set.len(), set.unrewarded()), (2, 2));
        assert_eq!(set.context(&id(2)), [3.0, 4.0]);
        let (w, x) = set.reward(&id(1), 0.5).expect("waiting");
        assert_eq!((w.reward(), x), (Some(0.5), &[1.0, 2.0][..]));
        assert_eq!(set.context(&id(1)), [] as [f64; 0], "a reward spends the context");
        assert_eq!(set.unrewarded(), 1);
        assert_eq!(set.get(&id(1)).and_then(Waiting::reward), Some(0.5));
        assert!(set.reward(&id(9), 1.0).is_none());
        assert_eq!(set.remove(&id(2)).map(|w| w.ts), Some(20));
        assert_eq!((set.len(), set.unrewarded()), (1, 0));
        assert!(!set.contains(&id(2)) && set.contains(&id(1)));
    }

    #[test]
    fn metrics_are_kept_once_per_decision_and_go_with_it() {
        let mut set = WaitingSet::default();
        set.insert(id(1), new(10), &[]);
        set.insert(id(2), new(20), &[]);
        assert!(set.set_metric(&id(1), "revenue", 12.5));
        assert!(!set.set_metric(&id(1), "revenue", 3.0), "once per (decision, metric)");
        assert!(set.set_metric(&id(1), "unsubscribe", 0.0));
        assert!(set.set_metric(&id(2), "unsubscribe", 1.0));
        assert!(!set.set_metric(&id(9), "revenue", 1.0), "not waiting");
        assert_eq!(set.metric(&id(1), "revenue"), Some(12.5));
        assert_eq!(set.metric(&id(2), "revenue"), None);
        assert_eq!(
            set.metrics_of(&id(1)).collect::<Vec<_>>(),
            [("revenue", 12.5), ("unsubscribe", 0.0)]
        );
        set.remove(&id(1));
        assert_eq!(set.metric(&id(1), "revenue"), None);
        set.insert(id(1), new(30), &[]);
        assert_eq!(
            set.metrics_of(&id(1)).count(),
            0,
            "a new decision under the id starts bare"
        );
        assert_eq!(set.metric(&id(2), "unsubscribe"), Some(1.0));
    }

    #[test]
    fn windows_close_in_order_and_chunks_are_given_back() {
        let mut set = WaitingSet::default();
        let n = 3 * CHUNK as u64 + 10;
        for i in 0..n {
            set.insert(id(i), new(i as i64), &[i as f64]);
        }
        assert_eq!(set.chunks.len(), 4);
        // Windows of 100 ms: at 99 + CHUNK, the first CHUNK decisions are due, in order.
        let mut closed = Vec::new();
        while let Some(i) = set.next_expired(99 + CHUNK as i64, 100) {
            closed.push(i);
            set.remove(&i);
        }
        assert_eq!(closed, (0..CHUNK as u64).map(id).collect::<Vec<_>>());
        assert_eq!(set.chunks.len(), 3, "the first chunk went with its decisions");
        assert_eq!(set.get(&id(CHUNK as u64)).map(|w| w.ts), Some(CHUNK as i64));
        assert_eq!(set.context(&id(n - 1)), [(n - 1) as f64]);
        // A decision passed by the window but kept (its default reward is being made durable)
        // holds its chunk, and the later ones, until it is removed.
        let keep = id(CHUNK as u64);
        while let Some(i) = set.next_expired(i64::MAX / 2, 100) {
            if i != keep {
                set.remove(&i);
            }
        }
        assert_eq!((set.len(), set.chunks.len()), (1, 3));
        assert!(set.next_expired(i64::MAX / 2, 100).is_none(), "offered once");
        set.remove(&keep);
        assert_eq!((set.len(), set.chunks.len()), (0, 0));
        set.insert(id(n), new(0), &[]);
        assert_eq!(set.next_expired(100, 100), Some(id(n)));
    }

    #[test]
    fn a_copy_keeps_what_the_window_has_passed() {
        let mut set = WaitingSet::default();
        for i in 0..5 {
            set.insert(id(i), new(i as i64), &[]);
        }
        assert_eq!(set.next_expired(101, 100), Some(id(0)));
        let mut copy = WaitingSet::default();
        for (w, x, passed) in set.iter() {
            let new = NewWaiting {
                ts: w.ts,
                variant: w.variant(),
                arm: w.arm(),
                hold: w.hold,
                reward: w.reward(),
            };
            if passed {
                copy.insert_passed(WaitingSet::id_of(w), new, x);
            } else {
                copy.insert(WaitingSet::id_of(w), new, x);
            }
        }
        assert!(copy == set);
        assert_eq!(copy.next_expired(101, 100), Some(id(1)));
    }
}
