//! The workflows end to end: commands over HTTP (the command API's router), the relay
//! and the real broker, the workflows process on its consumer groups, its steps run
//! back through the command side, the read models.

mod approvals;
mod graphql;
mod operations;
mod order_lifecycle;
mod prices;
mod rebuild;
mod recurring_orders;
mod reservation_expiry;
mod stack;
