//! A channel's history, one page at a time: bounded by a count the caller gives and by bytes, so a page
//! of large messages cannot grow a response (and the server's memory) without limit.

use rookery_events::{ChannelKey, Message};

use super::{Error, UseCases};

/// Messages read from the log at a time while a page fills.
const CHUNK: usize = 64;

/// One page of a channel's history.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// In ascending `message_seq`.
    pub messages: Vec<Message>,
    /// More messages exist within the asked-for range (the count or the byte budget cut the page).
    pub more: bool,
}

impl UseCases {
    /// Up to `limit` ordinary messages of channel `key` with seqs in `from..=to`, the newest ones when
    /// `newest_first` (else the oldest), in ascending order, stopping early once their payloads pass
    /// `max_page_bytes` (a page holds at least one message).
    ///
    /// # Errors
    /// [`Error::Core`] when the log cannot be read.
    pub async fn channel_page(&self, key: &ChannelKey, from: u64, to: u64, limit: usize, newest_first: bool) -> Result<Page, Error> {
        let (core, key, budget) = (self.core.clone(), key.clone(), self.config.max_page_bytes);
        let page = tokio::task::spawn_blocking(move || {
            let mut page = Page::default();
            let (mut lo, mut hi, mut bytes) = (from, to, 0usize);
            while lo <= hi {
                let want = CHUNK.min(limit + 1 - page.messages.len());
                let chunk = core.messages(&key, lo, hi, want, newest_first, false)?;
                let exhausted = chunk.len() < want;
                for m in chunk {
                    let size = m.payload.bytes().len();
                    if page.messages.len() == limit || (!page.messages.is_empty() && bytes + size > budget) {
                        page.more = true;
                        break;
                    }
                    bytes += size;
                    if newest_first {
                        hi = m.message_seq.0.saturating_sub(1);
                    } else {
                        lo = m.message_seq.0.saturating_add(1);
                    }
                    page.messages.push(m);
                }
                if page.more || exhausted || (newest_first && hi < lo) || hi == 0 {
                    break;
                }
            }
            if newest_first {
                page.messages.reverse();
            }
            Ok::<_, rookery_actors::CoreError>(page)
        })
        .await
        .map_err(|e| rookery_actors::CoreError::Storage(format!("reading history: {e}")))??;
        Ok(page)
    }
}
