//! Export Contacts as a stream of typed contacts: the NDJSON body split into lines, each
//! parsed as it arrives, so an export of any size is read in constant memory.

use futures::{Stream, StreamExt, TryStreamExt};

use crate::{Client, Error, types};

/// Why an export stopped.
#[derive(Debug)]
pub enum ExportError {
    /// The request failed: the server's error body, or a transport error.
    Api(Box<Error<types::ErrorResponse>>),
    /// The body broke off mid-way.
    Body(reqwest::Error),
    /// A line was not a contact.
    Line(serde_json::Error),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Api(e) => write!(f, "export request failed: {e}"),
            ExportError::Body(e) => write!(f, "export stream broke off: {e}"),
            ExportError::Line(e) => write!(f, "export line is not a contact: {e}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// Every contact of `account_id`, oldest first, read from Export Contacts line by line.
pub fn export_contacts<'a>(
    client: &'a Client,
    account_id: &'a str,
) -> impl Stream<Item = Result<types::Contact, ExportError>> + 'a {
    futures::stream::once(async move {
        client
            .crm_export_contacts()
            .x_account_id(account_id)
            .send()
            .await
            .map_err(|e| ExportError::Api(Box::new(e)))
    })
    .map_ok(|response| {
        let bytes = response.into_inner_stream().map_err(ExportError::Body);
        lines(bytes)
            .map(|line| line.and_then(|l| serde_json::from_slice(&l).map_err(ExportError::Line)))
    })
    .try_flatten()
}

/// Splits a byte stream into its non-empty lines.
fn lines<S>(bytes: S) -> impl Stream<Item = Result<Vec<u8>, ExportError>>
where
    S: Stream<Item = Result<bytes::Bytes, ExportError>> + Unpin,
{
    futures::stream::unfold(
        (bytes, Vec::<u8>::new(), false),
        |(mut bytes, mut pending, mut ended)| async move {
            loop {
                if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).take(end).collect();
                    if line.is_empty() {
                        continue;
                    }
                    return Some((Ok(line), (bytes, pending, ended)));
                }
                if ended {
                    if pending.is_empty() {
                        return None;
                    }
                    let rest = std::mem::take(&mut pending);
                    return Some((Ok(rest), (bytes, pending, ended)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some((Err(e), (bytes, pending, true))),
                    None => ended = true,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_across_chunks() {
        let chunks: Vec<Result<bytes::Bytes, ExportError>> =
            ["{\"a\":", "1}\n{\"b\"", ":2}\n\n{\"c\":3}"]
                .into_iter()
                .map(|c| Ok(bytes::Bytes::from(c)))
                .collect();
        let got: Vec<String> = lines(futures::stream::iter(chunks))
            .map(|l| String::from_utf8(l.unwrap()).unwrap())
            .collect()
            .await;
        assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }
}
