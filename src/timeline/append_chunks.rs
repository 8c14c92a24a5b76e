//! Which chunks an append rewrites, and how its merged entries are cut into new chunks:
//! the pure planning half of `append.rs`, apart so its rules and their tests read alone.

use super::manifest::{CHUNK_FRAMES, ChunkRef, FrameMeta};
use std::collections::BTreeSet;

/// Indexes of the chunks an append of `entries` rewrites: those whose span holds one of its
/// seqs, and, when its first (last) seq falls outside every chunk, the chunk just before
/// (after) it if that chunk and every entry fit in one chunk (so that appends in ascending
/// or descending seq order fill chunks rather than add one reference each).
pub(super) fn touched_chunks(refs: &[ChunkRef], entries: &[FrameMeta]) -> BTreeSet<usize> {
    let mut touched: BTreeSet<usize> = entries
        .iter()
        .filter_map(|e| {
            let n = refs.partition_point(|c| c.last < e.seq);
            refs.get(n).filter(|c| c.first <= e.seq).map(|_| n)
        })
        .collect();
    if let Some(first) = entries.first() {
        let before = refs.partition_point(|c| c.last < first.seq);
        let inside = refs.get(before).is_some_and(|c| c.first <= first.seq);
        if !inside
            && before > 0
            && !touched.contains(&(before - 1))
            && refs[before - 1].count.saturating_add(entries.len()) <= CHUNK_FRAMES
        {
            touched.insert(before - 1);
        }
    }
    // Likewise the chunk just after its last seq, so that appends in descending seq order
    // fill chunks too.
    if let Some(last) = entries.last() {
        let after = refs.partition_point(|c| c.last < last.seq);
        if let Some(next) = refs.get(after)
            && next.first > last.seq
            && !touched.contains(&after)
            && next.count.saturating_add(entries.len()) <= CHUNK_FRAMES
        {
            touched.insert(after);
        }
    }
    touched
}

/// `merged` (sorted, one entry per seq, none inside an `untouched` span) cut into chunks:
/// never across an untouched chunk, so spans stay apart, and evenly into pieces of at most
/// [`CHUNK_FRAMES`].
pub(super) fn split_runs<'a>(
    merged: &'a [FrameMeta],
    untouched: &[ChunkRef],
) -> Vec<&'a [FrameMeta]> {
    let mut runs: Vec<&[FrameMeta]> = Vec::new();
    let mut start = 0;
    for i in 1..=merged.len() {
        let cut = i == merged.len() || {
            let (a, b) = (merged[i - 1].seq, merged[i].seq);
            // An untouched chunk lies between a and b.
            let n = untouched.partition_point(|c| c.last < a);
            untouched.get(n).is_some_and(|c| c.first < b)
        };
        if cut {
            runs.push(&merged[start..i]);
            start = i;
        }
    }
    let mut parts = Vec::new();
    for run in runs {
        let pieces = run.len().div_ceil(CHUNK_FRAMES).max(1);
        let size = run.len().div_ceil(pieces);
        parts.extend(run.chunks(size.max(1)));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> FrameMeta {
        FrameMeta::pending(seq, 0, 0.0, "")
    }

    fn chunk(first: u64, last: u64, count: usize) -> ChunkRef {
        ChunkRef {
            first,
            last,
            count,
            blake3: String::new(),
            dir: "d".into(),
            n: 0,
        }
    }

    #[test]
    fn an_append_at_the_end_touches_only_a_last_chunk_it_fits_in() {
        let full = [chunk(0, 999, 1000), chunk(1000, 1999, 1000)];
        let entries: Vec<FrameMeta> = (2000..2100).map(meta).collect();
        assert!(touched_chunks(&full, &entries).is_empty());
        let partial = [chunk(0, 999, 1000), chunk(1000, 1049, 50)];
        assert_eq!(touched_chunks(&partial, &entries), BTreeSet::from([1usize]));
    }

    #[test]
    fn appends_in_descending_order_fill_chunks() {
        let mut refs: Vec<ChunkRef> = Vec::new();
        for start in (0..100u64).rev().map(|i| i * 100) {
            let entries: Vec<FrameMeta> = (start..start + 100).map(meta).collect();
            let touched = touched_chunks(&refs, &entries);
            let mut count = entries.len();
            let mut last = start + 99;
            for &i in touched.iter().rev() {
                count += refs[i].count;
                last = last.max(refs[i].last);
                refs.remove(i);
            }
            refs.push(chunk(start, last, count));
            refs.sort_by_key(|c| c.first);
        }
        assert_eq!(refs.len(), 10, "{} references", refs.len());
    }

    #[test]
    fn appends_into_gaps_keep_the_references_bounded() {
        // 10 frames at a time, each batch into a gap between the earlier ones; each chunk
        // modelled with its entries, cut by `split_runs` as an append cuts them.
        let mut chunks: Vec<Vec<FrameMeta>> = Vec::new();
        let refs_of = |chunks: &[Vec<FrameMeta>]| -> Vec<ChunkRef> {
            chunks
                .iter()
                .map(|c| chunk(c[0].seq, c[c.len() - 1].seq, c.len()))
                .collect()
        };
        for k in 0..1000u64 {
            let start = (k * 7919 % 1000) * 100;
            let entries: Vec<FrameMeta> = (start..start + 10).map(meta).collect();
            let refs = refs_of(&chunks);
            let touched = touched_chunks(&refs, &entries);
            let mut merged: Vec<FrameMeta> = entries;
            let mut untouched = Vec::new();
            for (i, c) in chunks.into_iter().enumerate() {
                if touched.contains(&i) {
                    merged.extend(c);
                } else {
                    untouched.push(c);
                }
            }
            merged.sort_by_key(|f| f.seq);
            let parts: Vec<Vec<FrameMeta>> = split_runs(&merged, &refs_of(&untouched))
                .into_iter()
                .map(<[FrameMeta]>::to_vec)
                .collect();
            chunks = untouched;
            chunks.extend(parts);
            chunks.sort_by_key(|c| c[0].seq);
        }
        let total: usize = chunks.iter().map(Vec::len).sum();
        assert_eq!(total, 10_000);
        // Merging into the chunk before or after fills chunks: no more than one reference
        // per 500 entries, and a few.
        assert!(
            chunks.len() <= total / 500 + 8,
            "{} references",
            chunks.len()
        );
    }

    #[test]
    fn an_append_inside_spans_touches_the_chunks_holding_its_seqs() {
        let refs = [chunk(0, 9, 10), chunk(10, 19, 10), chunk(20, 29, 10)];
        let entries = vec![meta(12), meta(25)];
        assert_eq!(touched_chunks(&refs, &entries), BTreeSet::from([1, 2]));
    }

    #[test]
    fn runs_never_straddle_an_untouched_chunk_and_split_evenly() {
        let merged: Vec<FrameMeta> = [1, 2, 50, 51].into_iter().map(meta).collect();
        let untouched = [chunk(10, 40, 5)];
        let parts = split_runs(&merged, &untouched);
        let seqs: Vec<Vec<u64>> = parts
            .iter()
            .map(|p| p.iter().map(|f| f.seq).collect())
            .collect();
        assert_eq!(seqs, vec![vec![1, 2], vec![50, 51]]);

        let long: Vec<FrameMeta> = (0..2001).map(meta).collect();
        let sizes: Vec<usize> = split_runs(&long, &[]).iter().map(|p| p.len()).collect();
        assert_eq!(sizes, vec![667, 667, 667]);
    }
}
