//! Files rewritten with the bytes they had: a site generator (Eleventy without `--incremental`)
//! writes every page again on each save, so a stylesheet save came as the sheet and every page,
//! and every tab reloaded where the sheet alone would have been swapped in place.
//!
//! Owns [`Unchanged`]: a digest of each file seen in a batch (of at most [`DIGESTED_AT_MOST`]
//! paths, files up to [`FILE_MAX`] bytes, [`BATCH_MAX`] bytes a batch), and which files of a
//! batch have the bytes their last batch saw. Only a bulk batch ([`BULK_PATHS`] paths or more)
//! loses them: a save of one file without a change is how some reload on purpose. A file first
//! seen in a batch has nothing to compare with and stays; one not digested (too large, unread,
//! gone) forgets its digest, so no stale one is compared later. It knows nothing of URLs or of
//! the event stream.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::batch::BULK_PATHS;

/// A batch of more paths than this is a checkout or a deletion: its files are not read (it is
/// sent as a reload anyway from 500 on), and their digests are forgotten.
const DIGESTED_AT_MOST: usize = 2000;

/// Files larger than this are not read: media and archives change as a whole, and a page is
/// smaller.
const FILE_MAX: u64 = 1024 * 1024;

/// The most bytes read for one batch (a generator's 654 pages are about 7 MB): the rest count
/// as changed.
const BATCH_MAX: u64 = 32 * 1024 * 1024;

/// Digests of the files seen in batches.
#[derive(Default)]
pub struct Unchanged {
    digests: HashMap<PathBuf, u64>,
}

impl Unchanged {
    /// The paths of a batch, without those whose bytes are the ones their last batch saw when the
    /// batch is a bulk write; each one read has its digest kept for the next.
    pub fn drop_unchanged(&mut self, paths: Vec<PathBuf>) -> Vec<PathBuf> {
        if paths.len() > DIGESTED_AT_MOST {
            for path in &paths {
                self.digests.remove(path);
            }
            return paths;
        }
        let bulk = paths.len() >= BULK_PATHS;
        let mut budget = BATCH_MAX;
        paths
            .into_iter()
            .filter(|path| {
                let now = digest(path, &mut budget);
                let before = match now {
                    Some(now) => self.digests.insert(path.clone(), now),
                    None => self.digests.remove(path),
                };
                !(bulk && now.is_some() && before == now)
            })
            .collect()
    }
}

/// A digest of the file's bytes, when it is a regular file small enough to read within `budget`
/// (which it takes from).
fn digest(path: &Path, budget: &mut u64) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > FILE_MAX || meta.len() > *budget {
        return None;
    }
    *budget -= meta.len();
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).ok()?);
    // Read to the end whatever its length now: a file growing meanwhile is a change.
    std::fs::File::open(path)
        .ok()?
        .take(FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > FILE_MAX {
        return None;
    }
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(&bytes);
    hasher.write_usize(bytes.len());
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_bulk_batch_loses_the_files_rewritten_with_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| dir.path().join(name);
        let write = |name: &str, text: &str| std::fs::write(file(name), text).unwrap();
        for name in ["a.html", "b.html", "site.css"] {
            write(name, name);
        }
        let all = || vec![file("a.html"), file("b.html"), file("site.css")];
        let mut unchanged = Unchanged::default();
        // First seen: nothing to compare with.
        assert_eq!(
            names(&unchanged.drop_unchanged(all())),
            ["a.html", "b.html", "site.css"]
        );
        // The generator writes every page again, the sheet changed.
        write("site.css", "body { color: teal }");
        assert_eq!(names(&unchanged.drop_unchanged(all())), ["site.css"]);
        // A page changed too.
        write("b.html", "b, edited");
        assert_eq!(names(&unchanged.drop_unchanged(all())), ["b.html"]);
        // Nothing changed at all: an empty batch.
        assert!(unchanged.drop_unchanged(all()).is_empty());
        // One or two files saved without a change stay: a save to reload on purpose.
        let two = vec![file("a.html"), file("b.html")];
        assert_eq!(names(&unchanged.drop_unchanged(two)), ["a.html", "b.html"]);
        // A file gone stays (a deletion), and its digest goes: back with its old bytes, it counts.
        std::fs::remove_file(file("a.html")).unwrap();
        assert_eq!(names(&unchanged.drop_unchanged(all())), ["a.html"]);
        write("a.html", "a.html");
        assert_eq!(names(&unchanged.drop_unchanged(all())), ["a.html"]);
    }

    #[test]
    fn a_huge_batch_is_not_read_and_forgets_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|i| dir.path().join(format!("{i}.html")))
            .collect();
        for path in &paths {
            std::fs::write(path, "same").unwrap();
        }
        let mut unchanged = Unchanged::default();
        unchanged.drop_unchanged(paths.clone());
        let mut huge = paths.clone();
        huge.extend((0..DIGESTED_AT_MOST).map(|i| dir.path().join(format!("gone-{i}"))));
        assert_eq!(unchanged.drop_unchanged(huge).len(), DIGESTED_AT_MOST + 3);
        // Forgotten: the next batch has nothing to compare with.
        assert_eq!(unchanged.drop_unchanged(paths).len(), 3);
    }
}
