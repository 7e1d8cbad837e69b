//! Support shared by the router's whole-product tests (GraphQL, websockets, REST).
#![allow(dead_code)]

pub mod rest;
pub mod stack;
pub mod streams;
