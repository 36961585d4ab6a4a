//! Shards: which items this process does when several run the same batch.
//!
//! An item belongs to shard `hash(relative path) mod N`, so the split needs
//! no coordination and no listing of the whole folder: every process walks
//! the same tree and keeps its own items. N shards together do each item
//! exactly once, whatever machine each runs on.

use sha2::{Digest, Sha256};

use crate::error::Error;

/// One of `count` shards, numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole batch.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `K/N` (1-based, as people count: `3/8` is the third of
    /// eight), or `auto`, which reads the job array of Slurm
    /// (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN`, of
    /// `GLOT_SHARD_COUNT` or else `SLURM_ARRAY_TASK_COUNT`) or of a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of `GLOT_SHARD_COUNT`).
    pub fn parse(spec: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard, Error> {
        if spec == "auto" {
            return from_env(env);
        }
        let bad = || {
            Error::Usage(format!(
                "--shard takes K/N with 1 <= K <= N (like 3/8) or `auto`, not `{spec}`"
            ))
        };
        let (k, n) = spec.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard {
            index: k - 1,
            count: n,
        })
    }

    /// Whether the item at `relative` (a `/`-separated path) is this shard's.
    pub fn owns(&self, relative: &str) -> bool {
        if self.count == 1 {
            return true;
        }
        let digest = Sha256::digest(relative.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(head) % self.count as u64) as usize == self.index
    }

    /// `3/8`, as the user writes it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.index + 1, self.count)
    }
}

fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Shard, Error> {
    let number = |name: &str| -> Result<Option<usize>, Error> {
        env(name)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    Error::Usage(format!(
                        "{name}={v} is not a number (needed by --shard auto)"
                    ))
                })
            })
            .transpose()
    };
    let shard = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        // GLOT_SHARD_COUNT wins: a stepped or partial array (`--array=0-14:2`,
        // a resubmitted `--array=3,5`) has fewer tasks than shards.
        let count = match number("GLOT_SHARD_COUNT")? {
            Some(n) => n,
            None => number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                Error::Usage("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
            })?,
        };
        Shard {
            index: id.checked_sub(min).ok_or_else(|| {
                Error::Usage(format!(
                    "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
                ))
            })?,
            count,
        }
    } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = number("GLOT_SHARD_COUNT")?.ok_or_else(|| {
            Error::Usage(
                "JOB_COMPLETION_INDEX is set: also set GLOT_SHARD_COUNT to the job's completions"
                    .into(),
            )
        })?;
        Shard { index, count }
    } else {
        return Err(Error::Usage(
            "--shard auto needs SLURM_ARRAY_TASK_ID (a Slurm job array) or JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)".into(),
        ));
    };
    if shard.count == 0 || shard.index >= shard.count {
        return Err(Error::Usage(format!(
            "shard index {} is out of range for {} shard(s)",
            shard.index, shard.count
        )));
    }
    Ok(shard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_flags_and_job_arrays() {
        let none = env(&[]);
        assert_eq!(
            Shard::parse("3/8", &none).unwrap(),
            Shard { index: 2, count: 8 }
        );
        for bad in ["0/8", "9/8", "3", "a/b", "1/0", "auto"] {
            assert!(Shard::parse(bad, &none).is_err(), "{bad}");
        }
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        assert_eq!(
            Shard::parse("auto", slurm).unwrap(),
            Shard { index: 4, count: 8 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0"), ("GLOT_SHARD_COUNT", "4")]);
        assert_eq!(
            Shard::parse("auto", k8s).unwrap(),
            Shard { index: 0, count: 4 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "4"), ("GLOT_SHARD_COUNT", "4")]);
        assert!(Shard::parse("auto", k8s).is_err());
    }

    #[test]
    fn shards_split_items_exactly_once() {
        let paths: Vec<String> = (0..1000)
            .map(|i| format!("dir{}/file{i}.md", i % 7))
            .collect();
        let shards: Vec<Shard> = (0..4).map(|index| Shard { index, count: 4 }).collect();
        for p in &paths {
            assert_eq!(shards.iter().filter(|s| s.owns(p)).count(), 1);
        }
        for s in &shards {
            let n = paths.iter().filter(|p| s.owns(p)).count();
            assert!((200..300).contains(&n), "shard {} has {n}", s.label());
        }
    }
}
