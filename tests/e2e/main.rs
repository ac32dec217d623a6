//! End-to-end tests of the whole toolkit against real processes: the
//! `strangler` binary, real HTTP upstreams on loopback, real PostgreSQL.

mod support;

mod board_ui;
mod cdc;
mod cdc_additions;
mod cdc_chunked;
mod cdc_connections;
mod cdc_directions;
mod cdc_faults;
mod cdc_ha;
mod cdc_kafka_auth;
mod cdc_kafka_resume;
mod cdc_large_tx;
mod cdc_mysql;
mod cdc_outbox;
mod cdc_schema;
mod cdc_types;
mod demo;
mod deploy;
mod example_outbox;
mod example_shadow;
mod inventory;
mod monitoring;

mod router_admin;
mod router_config;
mod router_fallback;
mod router_fleet;
mod router_limits;
mod router_pooling;
mod router_promote;
mod router_routing;
mod router_shadow;
mod router_store;
mod router_streams;
mod router_tls;
mod router_traces;
mod setup;
mod state_schema;
