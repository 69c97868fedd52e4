//! A channel's history, one page at a time: bounded by a count the caller gives and by bytes, so a page
//! of large messages cannot grow a response (and the server's memory) without limit.

use rookery_events::{ChannelKey, Message, Payload, Uid};

use super::{Error, UseCases};

/// Messages read from the log at a time while a page fills.
const CHUNK: usize = 64;

/// One page of a channel's history.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// In ascending `message_seq`; a retracted message's payload is empty.
    pub messages: Vec<Message>,
    /// More messages exist within the asked-for range (the count or the byte budget cut the page).
    pub more: bool,
    /// The retracted messages of the page, by seq, with who retracted them.
    pub revoked: std::collections::BTreeMap<u64, Uid>,
}

impl UseCases {
    /// Up to `limit` ordinary messages of channel `key` with seqs in `from..=to`, the newest ones when
    /// `newest_first` (else the oldest), in ascending order, stopping early once their payloads pass
    /// `max_page_bytes` (a page holds at least one message).
    ///
    /// # Errors
    /// [`Error::Core`] when the log cannot be read.
    pub async fn channel_page(&self, key: &ChannelKey, from: u64, to: u64, limit: usize, newest_first: bool) -> Result<Page, Error> {
        let (core, k, budget) = (self.core.clone(), key.clone(), self.config.max_page_bytes);
        let page = tokio::task::spawn_blocking(move || {
            let mut page = Page::default();
            let (mut lo, mut hi, mut bytes) = (from, to, 0usize);
            while lo <= hi {
                let want = CHUNK.min(limit + 1 - page.messages.len());
                let chunk = core.messages(&k, lo, hi, want, newest_first, false)?;
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
        let mut page = page;
        self.hide_revoked(key, &mut page.messages, &mut page.revoked).await?;
        Ok(page)
    }

    /// Empties the payloads of the retracted ones among `messages` (of channel `key`) and lists them
    /// in `revoked`: readers never see a retracted message's content (the log keeps it for audits).
    ///
    /// # Errors
    /// [`Error::Core`] when the channel cannot be read.
    pub async fn hide_revoked(&self, key: &ChannelKey, messages: &mut [Message], revoked: &mut std::collections::BTreeMap<u64, Uid>) -> Result<(), Error> {
        let (Some(lo), Some(hi)) = (messages.iter().map(|m| m.message_seq.0).min(), messages.iter().map(|m| m.message_seq.0).max()) else {
            return Ok(());
        };
        if messages.iter().all(|m| m.header.sync_once) {
            return Ok(());
        }
        for (seq, by) in self.core.revoked(key, lo, hi).await? {
            revoked.insert(seq.0, by);
        }
        for m in messages.iter_mut().filter(|m| !m.header.sync_once && revoked.contains_key(&m.message_seq.0)) {
            m.payload = Payload::Inline(Vec::new());
        }
        Ok(())
    }
}
