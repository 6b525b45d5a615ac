//! The three indexes' declarations: which fields each holds, and which can be searched,
//! filtered and sorted. The search projections fill them; readers validate requests
//! against them.

use vectis_read_side::catalog;

use crate::declaration::{FieldKind, FieldSpec, IndexDeclaration};

const fn field(name: &'static str, kind: FieldKind, searchable: bool, filterable: bool, sortable: bool) -> FieldSpec {
    FieldSpec { name, kind, searchable, filterable, sortable }
}

use FieldKind::{Integer, Keyword, Keywords, Text, Timestamp};

pub static ORDERS: IndexDeclaration = IndexDeclaration {
    name: "orders",
    projection: &catalog::SEARCH_ORDERS,
    entity_field: "id",
    fields: &[
        field("order_id", Keyword, true, false, false),
        field("account_id", Keyword, false, true, false),
        field("account_name", Text, true, false, false),
        field("status", Keyword, true, true, false),
        field("skus", Keywords, true, true, false),
        field("total_minor", Integer, false, true, true),
        field("currency", Keyword, false, true, false),
        field("placed_at", Timestamp, false, true, true),
    ],
};

pub static ACCOUNTS: IndexDeclaration = IndexDeclaration {
    name: "accounts",
    projection: &catalog::SEARCH_ACCOUNTS,
    entity_field: "id",
    fields: &[
        field("name", Text, true, false, true),
        field("email", Text, true, false, false),
        field("status", Keyword, false, true, false),
    ],
};

pub static PRODUCTS: IndexDeclaration = IndexDeclaration {
    name: "products",
    projection: &catalog::SEARCH_PRODUCTS,
    entity_field: "sku",
    fields: &[
        field("sku", Keyword, true, true, false),
        field("name", Text, true, false, true),
        field("description", Text, true, false, false),
        field("unit_price_minor", Integer, false, true, true),
        field("currency", Keyword, false, true, false),
        field("available", Integer, false, true, true),
    ],
};

/// Every index's declaration.
pub fn declarations() -> [&'static IndexDeclaration; 3] {
    [&ORDERS, &ACCOUNTS, &PRODUCTS]
}
