//! Choosing one instance among several.

use rand::Rng;

/// Power of two choices: picks two distinct candidates at random and returns
/// the one with the lower `load` (the first pick on a tie). `None` only when
/// there are no candidates; a single candidate is returned as is.
///
/// Since both picks are distinct, the single most loaded candidate is never
/// chosen while another has a lower load, yet the choice needs no global
/// ordering of loads.
///
/// ```
/// use weft_registry::pick_two;
///
/// let outstanding = [7, 0, 3];
/// let chosen = pick_two(&outstanding, |&n| n).unwrap();
/// assert_ne!(*chosen, 7);
/// ```
pub fn pick_two<T>(candidates: &[T], load: impl Fn(&T) -> usize) -> Option<&T> {
    match candidates {
        [] => None,
        [only] => Some(only),
        _ => {
            let n = candidates.len();
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            // Draw from the other n - 1 so the two picks are distinct.
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (&candidates[a], &candidates[b]);
            Some(if load(b) < load(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_single() {
        assert_eq!(pick_two::<u8>(&[], |_| 0), None);
        assert_eq!(pick_two(&[5usize], |&n| n), Some(&5));
    }

    #[test]
    fn the_overloaded_candidate_always_loses() {
        for n in 2..6 {
            let mut loads = vec![0usize; n];
            loads[n - 1] = 100;
            let indexed: Vec<(usize, usize)> = loads.into_iter().enumerate().collect();
            for _ in 0..2000 {
                let (i, _) = pick_two(&indexed, |&(_, load)| load).unwrap();
                assert_ne!(*i, n - 1, "chose the overloaded candidate among {n}");
            }
        }
    }

    #[test]
    fn equal_candidates_share_the_work() {
        let candidates: Vec<usize> = (0..4).collect();
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[*pick_two(&candidates, |_| 0).unwrap()] += 1;
        }
        // Each expects 1000; below 600 has a probability under 1e-40.
        assert!(counts.iter().all(|&c| c > 600), "{counts:?}");

        let pair = [0usize, 1];
        let mut counts = [0usize; 2];
        for _ in 0..2000 {
            counts[*pick_two(&pair, |_| 0).unwrap()] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }
}
