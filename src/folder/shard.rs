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
    /// eight), or `auto`, which reads the job array of Slurm (see
    /// [`Array::shard`]) or of a Kubernetes Indexed Job
    /// (`JOB_COMPLETION_INDEX` of `GLOT_SHARD_COUNT`).
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
        let array = Array {
            id,
            min: number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(id),
            max: number("SLURM_ARRAY_TASK_MAX")?.unwrap_or(id),
            step: number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1),
            count: number("SLURM_ARRAY_TASK_COUNT")?,
        };
        array.shard(number("GLOT_SHARD_COUNT")?)?
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

/// A task of a Slurm job array, as Slurm describes it to the task.
struct Array {
    id: usize,
    min: usize,
    max: usize,
    step: usize,
    count: Option<usize>,
}

impl Array {
    /// The shard of this task. An array that is one whole range
    /// (`--array=0-7`, `1-8`, `0-14:2`) is the set of shards: the task's
    /// place in it is its shard, of as many as the array has tasks. Any
    /// other array (`--array=3,5`, resubmitting two shards of eight) has
    /// task IDs that name shards, of `GLOT_SHARD_COUNT`, which it needs:
    /// guessing would do some documents twice and others never.
    fn shard(&self, shards: Option<usize>) -> Result<Shard, Error> {
        let span = self.max.saturating_sub(self.min);
        let whole = self.count.filter(|&c| {
            self.min <= self.id && span.is_multiple_of(self.step) && span / self.step + 1 == c
        });
        match (whole, shards) {
            (Some(count), None) => Ok(Shard {
                index: (self.id - self.min) / self.step,
                count,
            }),
            (Some(count), Some(n)) if count == n => Ok(Shard {
                index: (self.id - self.min) / self.step,
                count,
            }),
            (_, Some(count)) => Ok(Shard {
                index: self.id,
                count,
            }),
            (None, None) => Err(Error::Usage(format!(
                "this job array (tasks {}-{} by {}, {} of them) is not one whole range: set GLOT_SHARD_COUNT to the number of shards, and each task ID names its shard (0-based)",
                self.min,
                self.max,
                self.step,
                self.count.map_or_else(|| "an unknown number".to_string(), |c| c.to_string())
            ))),
        }
    }
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
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        assert_eq!(
            Shard::parse("auto", slurm).unwrap(),
            Shard { index: 4, count: 8 }
        );
        // The README's arrays: whole ranges are the shards; other arrays
        // name their shards, of GLOT_SHARD_COUNT.
        let task = |id: &str, min: &str, max: &str, step: &str, count: &str, shards: &str| {
            let mut vars = vec![
                ("SLURM_ARRAY_TASK_ID", id.to_string()),
                ("SLURM_ARRAY_TASK_MIN", min.to_string()),
                ("SLURM_ARRAY_TASK_MAX", max.to_string()),
                ("SLURM_ARRAY_TASK_STEP", step.to_string()),
                ("SLURM_ARRAY_TASK_COUNT", count.to_string()),
            ];
            if !shards.is_empty() {
                vars.push(("GLOT_SHARD_COUNT", shards.to_string()));
            }
            Shard::parse("auto", |k| {
                vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
            })
        };
        let at = |index, count| Shard { index, count };
        assert_eq!(task("7", "0", "7", "1", "8", "").unwrap(), at(7, 8));
        assert_eq!(task("8", "1", "8", "1", "8", "").unwrap(), at(7, 8));
        assert_eq!(task("14", "0", "14", "2", "8", "").unwrap(), at(7, 8));
        assert_eq!(task("14", "0", "14", "2", "8", "8").unwrap(), at(7, 8));
        assert_eq!(task("5", "3", "5", "1", "2", "8").unwrap(), at(5, 8));
        assert_eq!(task("4", "4", "5", "1", "2", "8").unwrap(), at(4, 8));
        assert_eq!(task("7", "0", "7", "1", "6", "8").unwrap(), at(7, 8));
        assert!(task("5", "3", "5", "1", "2", "").is_err());
        assert!(task("9", "3", "9", "1", "2", "8").is_err());
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
