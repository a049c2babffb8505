//! The engine's transitions, against a scripted upstream and the SQLite replica on a temp
//! dir: no Postgres. (The integration tests run the same engine against a real one.)

mod fakes;
mod transitions;
