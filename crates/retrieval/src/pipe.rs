//! Byte streams between tools without a dump on disk: named pipes (FIFOs) and a copier thread
//! that counts the bytes for progress, and decompresses gzip/bzip2 plain dumps on the way.
//!
//! `exec::Cmd` cannot connect one program's stdout to another's stdin, so the tools read and
//! write FIFOs (`pg_dump --file=in`, `pg_restore out`) and this module copies `in` to `out`.
//! Opening a FIFO blocks until the other side opens it; when a tool dies before opening its
//! side, [`unblock`] opens the FIFO read-write (which never blocks) so the copier's open
//! returns and it sees end-of-file or a broken pipe instead of hanging.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::stat::Mode;

use crate::error::{Error, Result};

const COPY_BUFFER: usize = 1 << 20;

/// Creates a FIFO at `path` (removing a leftover one first), readable and writable by its
/// owner only.
pub(crate) fn make_fifo(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io("remove old fifo", path, error)),
    }
    nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR)
        .map_err(|errno| Error::io("create fifo", path, errno.into()))
}

/// Lets a copier blocked in opening `path` go on (see the module comment).
pub(crate) fn unblock(path: &Path) {
    let _ =
        OpenOptions::new().read(true).write(true).custom_flags(nix::libc::O_NONBLOCK).open(path);
}

/// Where the copier reads from.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// A FIFO another tool writes, or a plain file.
    Plain(PathBuf),
    /// A gzip-compressed file.
    Gzip(PathBuf),
    /// A bzip2-compressed file.
    Bzip2(PathBuf),
}

/// Copies `input` into the FIFO `output` on a blocking thread; `counter` follows the bytes
/// written. Returns the total.
pub(crate) fn spawn_copy(
    input: Input,
    output: PathBuf,
    counter: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<io::Result<u64>> {
    tokio::task::spawn_blocking(move || {
        let mut reader: Box<dyn Read> = match &input {
            Input::Plain(path) => Box::new(File::open(path)?),
            Input::Gzip(path) => Box::new(flate2::read::MultiGzDecoder::new(File::open(path)?)),
            Input::Bzip2(path) => Box::new(bzip2::read::MultiBzDecoder::new(File::open(path)?)),
        };
        let mut writer = OpenOptions::new().write(true).open(&output)?;
        let mut buffer = vec![0_u8; COPY_BUFFER];
        let mut total = 0_u64;
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            writer.write_all(&buffer[..read])?;
            total += read as u64;
            counter.store(total, Ordering::Relaxed);
        }
        writer.flush()?;
        Ok(total)
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[tokio::test]
    async fn copies_and_decompresses_through_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("in.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(&source).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&b"select 1;\n".repeat(1000)).unwrap();
        encoder.finish().unwrap();
        let fifo = dir.path().join("fifo");
        make_fifo(&fifo).unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let copy = spawn_copy(Input::Gzip(source), fifo.clone(), counter.clone());
        let read = tokio::task::spawn_blocking(move || std::fs::read(&fifo).unwrap());
        let data = read.await.unwrap();
        assert_eq!(copy.await.unwrap().unwrap(), 10_000);
        assert_eq!(data.len(), 10_000);
        assert_eq!(counter.load(Ordering::Relaxed), 10_000);
    }

    #[tokio::test]
    async fn unblock_frees_a_copier_whose_reader_never_came() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("in");
        std::fs::write(&source, "data").unwrap();
        let fifo = dir.path().join("fifo");
        make_fifo(&fifo).unwrap();
        let copy = spawn_copy(Input::Plain(source), fifo.clone(), Arc::new(AtomicU64::new(0)));
        // The copier blocks in open until someone reads; the "reader" died without opening.
        while !copy.is_finished() {
            unblock(&fifo);
            tokio::task::yield_now().await;
        }
        // Either the tiny write fit in the pipe before the read-write end closed, or it broke.
        let _ = copy.await.unwrap();
    }
}
