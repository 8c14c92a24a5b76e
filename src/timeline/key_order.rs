//! Where a frame's key falls in key order (`1.jpg` < `10.jpg` < `2.jpg`) among the seqs
//! `0..=m`, computed without listing them: the model `pages.rs` plans listing pages on.

/// Every seq from 0 to `m`, in the order of their keys: where a key falls among them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Model {
    pub(super) m: u64,
}

impl Model {
    /// Seqs within `0..=m` whose decimal form starts with the digits of `prefix` (a number
    /// without leading zeros, or 0 itself).
    fn under(&self, prefix: u128) -> u64 {
        let m = u128::from(self.m);
        if prefix == 0 {
            return 1;
        }
        let (mut lo, mut hi) = (prefix, prefix);
        let mut n: u128 = 0;
        while lo <= m {
            n += hi.min(m) - lo + 1;
            lo *= 10;
            hi = hi * 10 + 9;
        }
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// The position of `seq`'s key among the keys of `0..=m` (`seq` itself need not be in
    /// it).
    pub(super) fn rank(&self, seq: u64) -> u64 {
        let digits: Vec<u128> = seq
            .to_string()
            .bytes()
            .map(|b| u128::from(b - b'0'))
            .collect();
        let mut rank: u64 = 0;
        let mut prefix: u128 = 0;
        for (i, &d) in digits.iter().enumerate() {
            if i == 0 {
                if d > 0 {
                    rank += 1; // "0"
                    for e in 1..d {
                        rank = rank.saturating_add(self.under(e));
                    }
                }
            } else {
                // The shorter prefix, a seq itself, sorts first when within the model.
                if prefix <= u128::from(self.m) {
                    rank = rank.saturating_add(1);
                }
                for e in 0..d {
                    rank = rank.saturating_add(self.under(prefix * 10 + e));
                }
            }
            prefix = prefix * 10 + d;
        }
        rank
    }

    /// The seq whose key is at position `r` among those of `0..=m` (`r` at most `m`).
    pub(super) fn nth(&self, mut r: u64) -> u64 {
        let mut prefix: Option<u128> = None;
        for e in 0..10 {
            let n = self.under(e);
            if r < n {
                prefix = Some(e);
                break;
            }
            r -= n;
        }
        let Some(mut prefix) = prefix else {
            return self.m;
        };
        loop {
            if prefix == 0 || r == 0 {
                return u64::try_from(prefix).unwrap_or(self.m);
            }
            r -= 1;
            let mut next = None;
            for e in 0..10 {
                let n = self.under(prefix * 10 + e);
                if r < n {
                    next = Some(prefix * 10 + e);
                    break;
                }
                r -= n;
            }
            match next {
                Some(p) => prefix = p,
                None => return u64::try_from(prefix).unwrap_or(self.m),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Model;
    use crate::layout::frame_name;

    fn sorted_keys(m: u64) -> Vec<u64> {
        let mut seqs: Vec<u64> = (0..=m).collect();
        seqs.sort_by_key(|s| frame_name(*s));
        seqs
    }

    #[test]
    fn rank_and_nth_follow_key_order() {
        for m in [0, 1, 9, 10, 11, 99, 100, 239, 1000, 1234, 10_000, 20_345] {
            let model = Model { m };
            for (i, seq) in sorted_keys(m).into_iter().enumerate() {
                assert_eq!(model.rank(seq), i as u64, "rank of {seq} in 0..={m}");
                assert_eq!(model.nth(i as u64), seq, "key {i} of 0..={m}");
            }
        }
    }

    #[test]
    fn rank_of_a_seq_beyond_the_model_is_where_its_key_would_sort() {
        let model = Model { m: 239 };
        let keys = sorted_keys(239);
        for seq in [240, 999, 5000, 1_000_000] {
            let name = frame_name(seq);
            let expected = keys.iter().filter(|s| frame_name(**s) < name).count();
            assert_eq!(model.rank(seq), expected as u64, "{seq}");
        }
    }

    #[test]
    fn the_largest_seqs_do_not_overflow() {
        let model = Model { m: u64::MAX };
        let r = model.rank(u64::MAX);
        assert_eq!(model.nth(r), u64::MAX);
        assert!(Model { m: 10 }.rank(u64::MAX) <= 11);
    }

    #[test]
    fn a_range_in_the_middle_of_a_long_timeline_is_one_page() {
        let model = Model { m: 99_999 };
        let pages: std::collections::BTreeSet<u64> =
            (50_000..50_300).map(|s| model.rank(s) / 1000).collect();
        assert!(pages.len() <= 2, "{pages:?}");
    }
}
