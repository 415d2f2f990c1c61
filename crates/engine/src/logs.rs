//! A clone server's log (`<state>/logs/<clone>.log`, which `servers` names): its tail and what
//! it writes after a given offset, for `GET /clone/{id}/logs`.

use std::io::SeekFrom;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::Engine;
use crate::error::{Error, Result};

/// A tail reads at most this much of the end of a log.
pub const MAX_TAIL_BYTES: u64 = 1 << 20;

/// Part of a log: its text and the offset just after it, where the next read starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogChunk {
    /// The text (invalid UTF-8 replaced).
    pub text: String,
    /// The byte offset in the file just after `text`.
    pub end: u64,
}

impl Engine {
    /// The last `lines` lines of clone `id`'s log (all of its last [`MAX_TAIL_BYTES`] without a
    /// count); empty while the server has written nothing.
    pub async fn clone_log_tail(&self, id: &str, lines: Option<usize>) -> Result<LogChunk> {
        let path = self.clone_log_path(id)?;
        let len = file_len(&path).await?;
        let start = len.saturating_sub(MAX_TAIL_BYTES);
        let mut chunk = read_range(&path, start, len).await?;
        if start > 0 {
            // Begin at a whole line.
            let cut = chunk.text.find('\n').map_or(chunk.text.len(), |at| at + 1);
            chunk.text.drain(..cut);
        }
        if let Some(lines) = lines {
            chunk.text = last_lines(&chunk.text, lines).to_owned();
        }
        Ok(chunk)
    }

    /// What clone `id`'s log holds after `offset` (from the start again if the file is now
    /// shorter: it was replaced). Fails with `NotFound` once the clone is gone.
    pub async fn clone_log_after(&self, id: &str, offset: u64) -> Result<LogChunk> {
        let path = self.clone_log_path(id)?;
        let len = file_len(&path).await?;
        let start = if len < offset { 0 } else { offset };
        read_range(&path, start, len.min(start + MAX_TAIL_BYTES)).await
    }
}

/// The last `count` lines of `text` (a final line without a newline counts).
fn last_lines(text: &str, count: usize) -> &str {
    if count == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(count - 1) {
        Some((at, _)) => &text[at + 1..],
        None => text,
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |error| Error::Io { what: "read clone log", path: path.to_owned(), error }
}

/// The file's length; 0 when the server has not made it yet.
async fn file_len(path: &Path) -> Result<u64> {
    match tokio::fs::metadata(path).await {
        Ok(metadata) => Ok(metadata.len()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(io_error(path)(error)),
    }
}

async fn read_range(path: &Path, start: u64, end: u64) -> Result<LogChunk> {
    if end <= start {
        return Ok(LogChunk { text: String::new(), end: start });
    }
    let mut file = tokio::fs::File::open(path).await.map_err(io_error(path))?;
    file.seek(SeekFrom::Start(start)).await.map_err(io_error(path))?;
    let mut bytes = Vec::new();
    file.take(end - start).read_to_end(&mut bytes).await.map_err(io_error(path))?;
    let end = start + bytes.len() as u64;
    Ok(LogChunk { text: String::from_utf8_lossy(&bytes).into_owned(), end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_lines_with_or_without_a_final_newline() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }
}
