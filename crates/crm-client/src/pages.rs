//! Walking every page of a list operation by following its `next` cursor.
//!
//! A list operation answers one page (`data` and, while more remain, `next`); the next page
//! is asked for by passing that cursor back unchanged as the `next` query parameter. The last
//! page has no `next` (an empty string is taken to mean the same).

use std::future::Future;

use futures::{Stream, TryStreamExt as _, stream};

use crate::{Client, Error, ResponseValue, types};

/// A page of a list operation: its records and the cursor of the page after it.
pub trait Page {
    /// The record type the page lists.
    type Item;
    /// The cursor of the next page; `None` on the last page.
    fn next_cursor(&self) -> Option<&str>;
    /// The records of this page, in order.
    fn into_items(self) -> Vec<Self::Item>;
}

macro_rules! page {
    ($page:ty => $item:ty) => {
        impl Page for $page {
            type Item = $item;
            fn next_cursor(&self) -> Option<&str> {
                self.next.as_deref()
            }
            fn into_items(self) -> Vec<$item> {
                self.data
            }
        }
    };
}

page!(types::ContactsPaginated => types::Contact);
page!(types::AccountsPaginated => types::Account);
page!(types::ListsPaginated => types::List);
page!(types::CustomFieldDefinitionsPaginated => types::CustomFieldDefinition);

enum Cursor {
    First,
    After(String),
    Done,
}

/// Every page of a list operation, in order. `fetch(cursor)` asks for one page: `None` for
/// the first, then the `next` of the page before.
///
/// The stream ends after the last page (no `next`) or after the first error, which it
/// yields. If the server hands back the cursor it was just given, the stream ends rather
/// than asking for the same page forever.
///
/// ```no_run
/// # async fn demo(client: &crm_client::Client) {
/// use futures::TryStreamExt as _;
///
/// let pages = crm_client::pages(|cursor| {
///     let mut request = client
///         .crm_list_contacts()
///         .x_account_id("account-1")
///         .page_size("100")
///         .include("custom_fields");
///     if let Some(cursor) = cursor {
///         request = request.next(cursor);
///     }
///     async move { request.send().await.map(|page| page.into_inner()) }
/// });
/// let pages: Vec<_> = pages.try_collect().await.unwrap();
/// # }
/// ```
pub fn pages<P, E, F, Fut>(fetch: F) -> impl Stream<Item = Result<P, E>>
where
    P: Page,
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<P, E>>,
{
    stream::unfold((fetch, Cursor::First), |(mut fetch, cursor)| async move {
        let asked = match cursor {
            Cursor::Done => return None,
            Cursor::First => None,
            Cursor::After(cursor) => Some(cursor),
        };
        match fetch(asked.clone()).await {
            Ok(page) => {
                let next = match page.next_cursor() {
                    Some(next) if !next.is_empty() && Some(next) != asked.as_deref() => {
                        Cursor::After(next.to_owned())
                    }
                    _ => Cursor::Done,
                };
                Some((Ok(page), (fetch, next)))
            }
            Err(error) => Some((Err(error), (fetch, Cursor::Done))),
        }
    })
}

/// Every record of a list operation, page after page (see [`pages`]).
pub fn items<P, E, F, Fut>(fetch: F) -> impl Stream<Item = Result<P::Item, E>>
where
    P: Page,
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<P, E>>,
{
    pages(fetch)
        .map_ok(|page| stream::iter(page.into_items().into_iter().map(Ok)))
        .try_flatten()
}

/// The error every operation of the API fails with.
type ApiError = Error<types::ErrorResponse>;

/// Every contact of the linked account `account_id`, oldest first. For filters, fields or a
/// page size, build the request yourself and use [`items`].
pub fn all_contacts<'a>(
    client: &'a Client,
    account_id: &'a str,
) -> impl Stream<Item = Result<types::Contact, ApiError>> + 'a {
    items(move |cursor| {
        let request = client.crm_list_contacts().x_account_id(account_id);
        let request = match cursor {
            Some(cursor) => request.next(cursor),
            None => request,
        };
        async move { request.send().await.map(ResponseValue::into_inner) }
    })
}

/// Every account (company) of the linked account `account_id`, oldest first.
pub fn all_accounts<'a>(
    client: &'a Client,
    account_id: &'a str,
) -> impl Stream<Item = Result<types::Account, ApiError>> + 'a {
    items(move |cursor| {
        let request = client.crm_list_accounts().x_account_id(account_id);
        let request = match cursor {
            Some(cursor) => request.next(cursor),
            None => request,
        };
        async move { request.send().await.map(ResponseValue::into_inner) }
    })
}

/// Every list of the linked account `account_id`, oldest first.
pub fn all_lists<'a>(
    client: &'a Client,
    account_id: &'a str,
) -> impl Stream<Item = Result<types::List, ApiError>> + 'a {
    items(move |cursor| {
        let request = client.crm_list_lists().x_account_id(account_id);
        let request = match cursor {
            Some(cursor) => request.next(cursor),
            None => request,
        };
        async move { request.send().await.map(ResponseValue::into_inner) }
    })
}

/// Every custom field definition for contacts of the linked account `account_id`, oldest
/// first.
pub fn all_contact_custom_field_definitions<'a>(
    client: &'a Client,
    account_id: &'a str,
) -> impl Stream<Item = Result<types::CustomFieldDefinition, ApiError>> + 'a {
    items(move |cursor| {
        let request = client
            .crm_list_contact_custom_field_definitions()
            .x_account_id(account_id);
        let request = match cursor {
            Some(cursor) => request.next(cursor),
            None => request,
        };
        async move { request.send().await.map(ResponseValue::into_inner) }
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::future::{Ready, ready};

    use futures::StreamExt as _;

    use super::*;

    struct Numbers {
        next: Option<String>,
        data: Vec<u32>,
    }

    impl Page for Numbers {
        type Item = u32;
        fn next_cursor(&self) -> Option<&str> {
            self.next.as_deref()
        }
        fn into_items(self) -> Vec<u32> {
            self.data
        }
    }

    fn page(data: &[u32], next: Option<&str>) -> Numbers {
        Numbers {
            next: next.map(str::to_owned),
            data: data.to_vec(),
        }
    }

    /// Serves scripted pages in order, recording the cursor each call was given.
    struct Script {
        answers: RefCell<VecDeque<Result<Numbers, &'static str>>>,
        asked: RefCell<Vec<Option<String>>>,
    }

    impl Script {
        fn new(answers: Vec<Result<Numbers, &'static str>>) -> Self {
            Self {
                answers: RefCell::new(answers.into()),
                asked: RefCell::default(),
            }
        }

        fn fetch(&self, cursor: Option<String>) -> Ready<Result<Numbers, &'static str>> {
            self.asked.borrow_mut().push(cursor);
            let answer = self.answers.borrow_mut().pop_front();
            ready(answer.expect("no more pages to serve"))
        }
    }

    fn collect<T, E>(s: impl Stream<Item = Result<T, E>>) -> Vec<Result<T, E>> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(s.collect::<Vec<_>>())
    }

    #[test]
    fn follows_next_until_the_last_page() {
        let script = Script::new(vec![
            Ok(page(&[1, 2], Some("c1"))),
            Ok(page(&[3], Some("c2"))),
            Ok(page(&[], None)),
        ]);
        let got: Vec<u32> = collect(items(|c| script.fetch(c)))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(
            *script.asked.borrow(),
            [None, Some("c1".to_owned()), Some("c2".to_owned())]
        );
    }

    #[test]
    fn empty_next_ends_the_walk() {
        let script = Script::new(vec![Ok(page(&[1], Some("")))]);
        assert_eq!(collect(pages(|c| script.fetch(c))).len(), 1);
        assert_eq!(script.asked.borrow().len(), 1);
    }

    #[test]
    fn repeated_cursor_ends_the_walk() {
        let script = Script::new(vec![
            Ok(page(&[1], Some("same"))),
            Ok(page(&[2], Some("same"))),
        ]);
        let got: Vec<u32> = collect(items(|c| script.fetch(c)))
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, [1, 2]);
        assert_eq!(script.asked.borrow().len(), 2);
    }

    #[test]
    fn an_error_is_yielded_and_ends_the_walk() {
        let script = Script::new(vec![Ok(page(&[1], Some("c1"))), Err("boom")]);
        let got = collect(items(|c| script.fetch(c)));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Ok(1));
        assert_eq!(got[1], Err("boom"));
        assert_eq!(script.asked.borrow().len(), 2);
    }
}
