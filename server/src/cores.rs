//! Which CPUs the shards run on: parsing `--cores` and checking it exists.

use thiserror::Error;

/// A `--cores` value that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoresError {
    /// Not a number or range.
    #[error("cannot read core list item {item:?} (expected N or N-M)")]
    Syntax { item: String },
    /// A range whose end is before its start.
    #[error("core range {start}-{end} is backwards")]
    Backwards { start: usize, end: usize },
    /// The same core twice.
    #[error("core {core} listed twice")]
    Duplicate { core: usize },
    /// A core the machine does not have (or may not use).
    #[error("core {core} is not available here (available: {available:?})")]
    Missing { core: usize, available: Vec<usize> },
    /// Nothing listed.
    #[error("the core list is empty")]
    Empty,
}

/// Parses "0,2-4,7" into `[0, 2, 3, 4, 7]`.
pub fn parse_core_list(text: &str) -> Result<Vec<usize>, CoresError> {
    let mut cores = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let syntax = || CoresError::Syntax { item: item.to_string() };
        let (start, end) = match item.split_once('-') {
            Some((a, b)) => {
                (a.trim().parse().map_err(|_| syntax())?, b.trim().parse().map_err(|_| syntax())?)
            }
            None => {
                let core = item.parse().map_err(|_| syntax())?;
                (core, core)
            }
        };
        if end < start {
            return Err(CoresError::Backwards { start, end });
        }
        if end - start > 4096 {
            return Err(syntax());
        }
        for core in start..=end {
            if cores.contains(&core) {
                return Err(CoresError::Duplicate { core });
            }
            cores.push(core);
        }
    }
    if cores.is_empty() {
        return Err(CoresError::Empty);
    }
    Ok(cores)
}

/// The CPUs this process may run on.
pub fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> =
        core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        ids.push(0);
    }
    ids
}

/// Checks every requested core is available.
pub fn check_cores(cores: &[usize], available: &[usize]) -> Result<(), CoresError> {
    for core in cores {
        if !available.contains(core) {
            return Err(CoresError::Missing { core: *core, available: available.to_vec() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse_core_list("0"), Ok(vec![0]));
        assert_eq!(parse_core_list("0,2-4, 7"), Ok(vec![0, 2, 3, 4, 7]));
        assert!(matches!(parse_core_list("x"), Err(CoresError::Syntax { .. })));
        assert_eq!(parse_core_list("3-1"), Err(CoresError::Backwards { start: 3, end: 1 }));
        assert_eq!(parse_core_list("1,1"), Err(CoresError::Duplicate { core: 1 }));
        assert_eq!(parse_core_list(""), Err(CoresError::Empty));
    }

    #[test]
    fn missing_core_is_named() {
        assert_eq!(check_cores(&[0, 1], &[0, 1]), Ok(()));
        assert_eq!(check_cores(&[5], &[0, 1]), Err(CoresError::Missing { core: 5, available: vec![0, 1] }));
    }
}
