//! Replay detection: a fixed-size, sharded Bloom filter of the replay tags a
//! node has accepted in its current key epoch. Memory is fixed at
//! construction (about 28.8 bits per expected packet, 20 probes, a 1-in-a-
//! million false-positive rate at `capacity`); each tag maps to one of 64
//! mutex-guarded shards, so a tag's check-and-insert is atomic and threads
//! rarely contend. `rotate` clears it when the node's key epoch changes
//! (tags are bound to the node key, so old-epoch packets fail authentication
//! under the new key anyway). `save` writes a snapshot atomically and
//! `load` reads one back if it belongs to the same epoch and sizing, so
//! replay protection survives a restart (FORMAT.md, "Replay protection").

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::packet::ReplayTag;

/// Target false-positive probability at `capacity` insertions.
pub const TARGET_FALSE_POSITIVE_RATE: f64 = 1e-6;
/// Bloom probes per tag: ceil(log2(1 / TARGET_FALSE_POSITIVE_RATE)).
pub const PROBES: u32 = 20;
/// Bits per expected element: log2(1/p) / ln 2.
pub const BITS_PER_ELEMENT: f64 = 28.755;
/// Independent shards (each a Bloom filter of its own).
pub const SHARDS: usize = 64;

/// A thread-safe replay filter for one key epoch.
pub struct ReplayFilter {
    shards: Box<[Mutex<Box<[u64]>>]>,
    bits_per_shard: u64,
    capacity: usize,
    epoch: AtomicU64,
    inserted: AtomicUsize,
}

impl ReplayFilter {
    /// 64-bit words in each shard of a filter for `capacity` packets.
    fn words_per_shard(capacity: usize) -> u64 {
        let total_bits = (capacity.max(1024) as f64 * BITS_PER_ELEMENT).ceil() as u64;
        total_bits.div_ceil(64 * SHARDS as u64).max(1)
    }

    /// The bytes `new(capacity, _)` allocates, without allocating them.
    pub fn bytes_for(capacity: usize) -> usize {
        SHARDS * Self::words_per_shard(capacity) as usize * 8
    }

    /// A filter sized for `capacity` packets per epoch (at least 1024).
    pub fn new(capacity: usize, epoch: u64) -> Self {
        let capacity = capacity.max(1024);
        let words_per_shard = Self::words_per_shard(capacity);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(vec![0u64; words_per_shard as usize].into_boxed_slice()))
            .collect();
        ReplayFilter {
            shards,
            bits_per_shard: words_per_shard * 64,
            capacity,
            epoch: AtomicU64::new(epoch),
            inserted: AtomicUsize::new(0),
        }
    }

    /// Records `tag`; `true` if it was fresh, `false` if it is (probably) a
    /// replay. Call only for packets that passed authentication.
    pub fn check_and_insert(&self, tag: &ReplayTag) -> bool {
        let (shard, probes) = self.probes(tag);
        let mut words = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut fresh = false;
        for (word, mask) in probes {
            if words[word] & mask == 0 {
                fresh = true;
                words[word] |= mask;
            }
        }
        drop(words);
        if fresh {
            self.inserted.fetch_add(1, Ordering::Relaxed);
        }
        fresh
    }

    /// Whether `tag` is (probably) recorded, without inserting it.
    pub fn contains(&self, tag: &ReplayTag) -> bool {
        let (shard, mut probes) = self.probes(tag);
        let words = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        probes.all(|(word, mask)| words[word] & mask != 0)
    }

    /// The shard and the (word, bit mask) probes of `tag`: double hashing
    /// over the tag's two 64-bit halves (the tag is already uniform HKDF
    /// output, keyed by the node's secret, so it needs no further hashing).
    fn probes(&self, tag: &ReplayTag) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let t = &tag.0;
        let h1 = u64::from_le_bytes(t[..8].try_into().expect("8 bytes"));
        let h2 = u64::from_le_bytes(t[8..].try_into().expect("8 bytes")) | 1;
        let shard = ((h2 >> 32) as usize) % SHARDS;
        let bits = self.bits_per_shard;
        let probes = (0..u64::from(PROBES)).map(move |i| {
            let hash = h1.wrapping_add(i.wrapping_mul(h2));
            let bit = ((u128::from(hash) * u128::from(bits)) >> 64) as u64;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (shard, probes)
    }

    /// Clears the filter for a new key epoch.
    pub fn rotate(&self, new_epoch: u64) {
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .fill(0);
        }
        self.inserted.store(0, Ordering::Relaxed);
        self.epoch.store(new_epoch, Ordering::Relaxed);
    }

    /// The epoch this filter currently belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Tags accepted as fresh since the last rotation.
    pub fn len(&self) -> usize {
        self.inserted.load(Ordering::Relaxed)
    }

    /// Whether nothing was inserted since the last rotation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The packets per epoch the filter was sized for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Heap bytes held by the bit arrays (fixed for the filter's lifetime).
    pub fn memory_bytes(&self) -> usize {
        SHARDS * (self.bits_per_shard as usize / 8)
    }

    /// Estimated probability that a fresh tag is reported as a replay now:
    /// (1 − e^(−k·n/m))^k with n = `len()`, m = total bits, k = `PROBES`.
    pub fn false_positive_rate(&self) -> f64 {
        let bits = (self.bits_per_shard * SHARDS as u64) as f64;
        let k = f64::from(PROBES);
        (1.0 - (-k * self.len() as f64 / bits).exp()).powf(k)
    }
}

/// First bytes of a snapshot file.
const SNAPSHOT_MAGIC: &[u8; 8] = b"MXRPLY01";

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a replay filter snapshot")]
    Magic,
    #[error("snapshot belongs to another key epoch or REPLAY_CAPACITY")]
    Mismatch,
    #[error("snapshot checksum does not match (truncated or corrupt)")]
    Checksum,
}

fn mix(sum: u64, word: u64) -> u64 {
    (sum ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(17)
}

impl ReplayFilter {
    /// Writes a snapshot to `path` atomically (temp file, fsync, rename):
    /// magic, epoch, capacity, words per shard, inserted count, the bit
    /// words (u64 little-endian, shard after shard) and a checksum. Shards
    /// are copied one at a time, so inserts wait at most one shard copy.
    pub fn save(&self, path: &std::path::Path) -> Result<(), SnapshotError> {
        use std::io::Write;
        let words = self.bits_per_shard / 64;
        crate::keystore::write_atomically_with(path, |file| {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            out.write_all(SNAPSHOT_MAGIC)?;
            for v in [self.epoch(), self.capacity as u64, words, self.len() as u64] {
                out.write_all(&v.to_le_bytes())?;
            }
            let mut sum = 0u64;
            let mut copy: Vec<u64> = Vec::with_capacity(words as usize);
            for shard in self.shards.iter() {
                copy.clear();
                copy.extend_from_slice(&shard.lock().unwrap_or_else(|e| e.into_inner()));
                for w in &copy {
                    sum = mix(sum, *w);
                    out.write_all(&w.to_le_bytes())?;
                }
            }
            out.write_all(&sum.to_le_bytes())?;
            out.flush()
        })?;
        Ok(())
    }

    /// Reads a snapshot into this (fresh) filter if it matches its epoch and
    /// sizing; on any error the filter is left empty.
    pub fn load(&self, path: &std::path::Path) -> Result<(), SnapshotError> {
        use std::io::Read;
        let mut input = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path)?);
        let mut head = [0u8; 40];
        input.read_exact(&mut head)?;
        if &head[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::Magic);
        }
        let field =
            |i: usize| u64::from_le_bytes(head[8 + i * 8..16 + i * 8].try_into().expect("8"));
        let words = self.bits_per_shard / 64;
        if field(0) != self.epoch() || field(1) != self.capacity as u64 || field(2) != words {
            return Err(SnapshotError::Mismatch);
        }
        let inserted = field(3);
        let mut sum = 0u64;
        let mut word = [0u8; 8];
        let mut loaded: Vec<Box<[u64]>> = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            let mut shard = vec![0u64; words as usize].into_boxed_slice();
            for w in shard.iter_mut() {
                input.read_exact(&mut word)?;
                *w = u64::from_le_bytes(word);
                sum = mix(sum, *w);
            }
            loaded.push(shard);
        }
        input.read_exact(&mut word)?;
        if u64::from_le_bytes(word) != sum || input.read(&mut word)? != 0 {
            return Err(SnapshotError::Checksum);
        }
        for (shard, bits) in self.shards.iter().zip(loaded) {
            *shard.lock().unwrap_or_else(|e| e.into_inner()) = bits;
        }
        self.inserted.store(inserted as usize, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn snapshot_round_trips_and_refuses_other_epochs_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.bin");
        let filter = ReplayFilter::new(5_000, 42);
        for n in 0..3_000 {
            filter.check_and_insert(&tag(n));
        }
        filter.save(&path).unwrap();
        let back = ReplayFilter::new(5_000, 42);
        back.load(&path).unwrap();
        assert_eq!(back.len(), 3_000);
        assert!((0..3_000).all(|n| !back.check_and_insert(&tag(n))));
        assert!(back.check_and_insert(&tag(9_999_999)));
        assert!(matches!(
            ReplayFilter::new(5_000, 43).load(&path),
            Err(SnapshotError::Mismatch)
        ));
        assert!(matches!(
            ReplayFilter::new(6_000, 42).load(&path),
            Err(SnapshotError::Mismatch)
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let corrupt = ReplayFilter::new(5_000, 42);
        assert!(matches!(corrupt.load(&path), Err(SnapshotError::Checksum)));
        assert!(corrupt.is_empty() && !corrupt.contains(&tag(1)));
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(corrupt.load(&path), Err(SnapshotError::Io(_))));
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp files left behind");
    }

    fn tag(n: u64) -> ReplayTag {
        // Spread n over 16 bytes the way HKDF output would look: SplitMix64.
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut out = [0u8; 16];
        for chunk in out.chunks_mut(8) {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes());
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        }
        ReplayTag(out)
    }

    #[test]
    fn detects_replays_and_accepts_fresh_tags() {
        let filter = ReplayFilter::new(10_000, 7);
        for n in 0..10_000 {
            assert!(
                filter.check_and_insert(&tag(n)),
                "fresh tag {n} reported as replay"
            );
        }
        for n in 0..10_000 {
            assert!(
                !filter.check_and_insert(&tag(n)),
                "replay of {n} not detected"
            );
        }
        assert_eq!(filter.len(), 10_000);
        assert!(filter.false_positive_rate() < 2e-6);
    }

    #[test]
    fn false_positives_stay_rare_at_capacity() {
        let filter = ReplayFilter::new(20_000, 0);
        for n in 0..20_000 {
            filter.check_and_insert(&tag(n));
        }
        let false_positives = (1_000_000..1_200_000)
            .filter(|&n| filter.contains(&tag(n)))
            .count();
        // Expected ~0.2 at p = 1e-6.
        assert!(
            false_positives <= 3,
            "{false_positives} false positives in 200k"
        );
        assert!((0..20_000).all(|n| filter.contains(&tag(n))));
    }

    #[test]
    fn rotate_clears_and_sets_epoch() {
        let filter = ReplayFilter::new(1024, 1);
        assert!(filter.check_and_insert(&tag(1)));
        assert!(!filter.check_and_insert(&tag(1)));
        filter.rotate(2);
        assert_eq!(filter.epoch(), 2);
        assert!(filter.is_empty());
        assert!(filter.check_and_insert(&tag(1)));
    }

    #[test]
    fn memory_is_fixed_and_matches_sizing() {
        let filter = ReplayFilter::new(1_000_000, 0);
        let expected = (1_000_000.0 * BITS_PER_ELEMENT / 8.0) as usize;
        let memory = filter.memory_bytes();
        assert!(
            memory >= expected && memory < expected + SHARDS * 8 + 64,
            "{memory}"
        );
        for n in 0..1000 {
            filter.check_and_insert(&tag(n));
        }
        assert_eq!(filter.memory_bytes(), memory);
        assert_eq!(ReplayFilter::bytes_for(1_000_000), memory);
        assert_eq!(
            ReplayFilter::bytes_for(1),
            ReplayFilter::new(1, 0).memory_bytes()
        );
    }

    #[test]
    fn concurrent_inserts_of_one_tag_admit_exactly_one() {
        for round in 0..50 {
            let filter = Arc::new(ReplayFilter::new(1024, 0));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let filter = Arc::clone(&filter);
                    std::thread::spawn(move || filter.check_and_insert(&tag(round)))
                })
                .collect();
            let admitted = handles
                .into_iter()
                .map(|h| h.join().expect("thread panicked"))
                .filter(|&fresh| fresh)
                .count();
            assert_eq!(
                admitted, 1,
                "round {round}: {admitted} threads saw the tag as fresh"
            );
            assert_eq!(filter.len(), 1);
        }
    }
}
