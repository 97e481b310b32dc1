//! The shape of every paged list answer.

use serde::Serialize;
use services::read_models::Page;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct PageResponse<T> {
    pub items: Vec<T>,
    /// Rows matching the filter across all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

impl<T> PageResponse<T> {
    pub fn from_page<V>(page: Page<V>, map: impl FnMut(V) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(map).collect(),
            total: page.total,
            limit: page.limit,
            offset: page.offset,
        }
    }
}
