//! Building and checking a [`Plan`](super::Plan).
