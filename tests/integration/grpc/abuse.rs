//! HTTP/2 abuse under good traffic.
