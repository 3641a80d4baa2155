//! The bottom of policyctl: the admission model, the policy contract and the request path around the engines.
//!
//! 1. [`admission`]: decode an `AdmissionReview` into a [`admission::Review`], encode the answer;
//! 2. [`select`]: pick the policies that can match it from the policy set's [`select::Index`];
//! 3. [`engine`] / [`policy`]: the [`engine::Engine`] and [`policy::Policy`] contract every language implements —
//!    engines report facts ([`policy::Evaluation`]) under the request's one [`policy::Deadline`];
//! 4. [`decide`]: the only place facts become a [`decide::Decision`];
//! 5. [`pipeline`]: select → evaluate → decide.
//!
//! Policies are loaded by [`policy::loader`] into an immutable [`policy::PolicySet`]. This crate knows no policy
//! language: the engines are crates above it.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod admission;
pub mod decide;
pub mod engine;
pub mod pipeline;
pub mod policy;
pub mod select;
