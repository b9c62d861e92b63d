//! The PostgreSQL frontend protocol (version 3) as a state machine: [`PgConn`] takes the
//! bytes the server sent ([`PgConn::receive`]), gives the bytes to send
//! ([`PgConn::take_output`]) and reports what finished ([`PgConn::poll_event`]). It owns
//! no socket and reads no clock, so the tests drive it with scripted server messages and
//! the pool drives it over a core's outbound connection.
//!
//! Life of a connection: the startup message; authentication (SCRAM-SHA-256, md5, or
//! cleartext when the server asks for it); `ReadyForQuery`; then every [`Statement`] is
//! parsed once under its name, behind one Sync; then [`Event::Ready`]. From then on a
//! batch ([`PgConn::submit`]) is a Bind and an Execute per query, all results in binary,
//! and one Sync: the server runs the batch in one implicit transaction and answers each
//! query in order. Many batches may be in flight at once; their answers come back in
//! the order they were sent, so the in-flight list is a FIFO.
//!
//! An error inside a batch fails that batch (the server skips the rest of it up to its
//! Sync) and leaves the connection usable. An error outside a batch, a FATAL, or a
//! message the protocol does not allow ends the connection: `receive` returns it.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{DataRowBody, ErrorFields, Message};
use postgres_protocol::message::frontend;
use postgres_protocol::types::{self, ArrayDimension};
use postgres_protocol::{IsNull, Oid};

use crate::PgError;

/// Type OIDs of the parameters we bind.
pub mod oid {
    /// `int4`.
    pub const INT4: u32 = 23;
    /// `text`.
    pub const TEXT: u32 = 25;
    /// `int4[]`.
    pub const INT4_ARRAY: u32 = 1007;
}

/// Who we are to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// Role.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database.
    pub database: String,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
}

/// A statement prepared once per connection under `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement {
    /// The server-side name.
    pub name: &'static str,
    /// The SQL, with `$1`… parameters.
    pub sql: &'static str,
    /// The parameters' type OIDs ([`oid`]).
    pub types: &'static [Oid],
}

/// A parameter value (sent in binary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// `int4`.
    Int4(i32),
    /// `int4[]`, one dimension.
    Int4Array(Vec<i32>),
    /// `text`.
    Text(String),
}

/// One execution of a prepared statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Index into the connection's statements.
    pub stmt: usize,
    /// Its parameters.
    pub params: Vec<Param>,
}

/// The rows one query returned (binary format).
#[derive(Debug, Default)]
pub struct Rows {
    rows: Vec<DataRowBody>,
}

impl Rows {
    /// How many.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`.
    pub fn get(&self, i: usize) -> Option<Row<'_>> {
        self.rows.get(i).map(Row)
    }

    /// Every row.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(Row)
    }
}

/// One row.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a>(&'a DataRowBody);

impl<'a> Row<'a> {
    fn raw(&self, col: usize) -> Result<&'a [u8], PgError> {
        let range: Option<Range<usize>> = self
            .0
            .ranges()
            .nth(col)
            .map_err(|e| PgError::Protocol(format!("bad data row: {e}")))?
            .ok_or_else(|| PgError::Protocol(format!("no column {col}")))?;
        let range = range.ok_or_else(|| PgError::Protocol(format!("column {col} is NULL")))?;
        Ok(&self.0.buffer()[range])
    }

    /// Column `col` as `int4`.
    pub fn i32(&self, col: usize) -> Result<i32, PgError> {
        types::int4_from_sql(self.raw(col)?).map_err(|e| PgError::Protocol(format!("column {col}: {e}")))
    }

    /// Column `col` as `text`.
    pub fn str(&self, col: usize) -> Result<&'a str, PgError> {
        types::text_from_sql(self.raw(col)?).map_err(|e| PgError::Protocol(format!("column {col}: {e}")))
    }
}

/// A batch's number on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

/// What the connection has to report.
#[derive(Debug)]
pub enum Event {
    /// Authenticated and every statement prepared: batches may be submitted.
    Ready,
    /// A batch finished: one [`Rows`] per query, or the error that failed it.
    Done {
        /// Which.
        id: BatchId,
        /// Its outcome.
        result: Result<Vec<Rows>, PgError>,
    },
}

enum Phase {
    /// Startup sent; waiting for an authentication request.
    Startup,
    /// SCRAM exchange in progress.
    Sasl(Box<ScramSha256>),
    /// Authenticated; waiting for the first ReadyForQuery.
    Authenticated,
    /// Statements parsed; waiting for their ReadyForQuery.
    Preparing,
    /// Serving batches.
    Ready,
    /// Ended with an error.
    Failed,
}

struct InFlight {
    id: BatchId,
    results: Vec<Rows>,
    current: Vec<DataRowBody>,
    error: Option<PgError>,
}

/// One connection's protocol state.
pub struct PgConn {
    params: ConnectParams,
    statements: &'static [Statement],
    phase: Phase,
    inbuf: BytesMut,
    out: BytesMut,
    in_flight: VecDeque<InFlight>,
    events: VecDeque<Event>,
    next_id: u64,
    server_version: Option<String>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgConn({}@{}, {} in flight)", self.params.user, self.params.database, self.in_flight.len())
    }
}

fn io_err(e: std::io::Error) -> PgError {
    PgError::Protocol(e.to_string())
}

/// A server error from its fields; authentication failures are [`PgError::Auth`].
fn server_error(mut fields: ErrorFields<'_>) -> PgError {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    while let Ok(Some(f)) = fields.next() {
        let value = || String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'V' => severity = value(),
            b'S' if severity.is_empty() => severity = value(),
            b'C' => code = value(),
            b'M' => message = value(),
            _ => {}
        }
    }
    PgError::Server { severity, code, message }
}

impl PgConn {
    /// A connection about to start: the startup message is queued.
    pub fn new(params: ConnectParams, statements: &'static [Statement]) -> PgConn {
        let mut out = BytesMut::with_capacity(4096);
        let startup = [
            ("user", params.user.as_str()),
            ("database", params.database.as_str()),
            ("application_name", params.application_name.as_str()),
            ("client_encoding", "UTF8"),
        ];
        // Cannot fail: the strings hold no NUL (checked by the config) and are short.
        let _ = frontend::startup_message(startup.iter().copied(), &mut out);
        PgConn {
            params,
            statements,
            phase: Phase::Startup,
            inbuf: BytesMut::with_capacity(16 << 10),
            out,
            in_flight: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 0,
            server_version: None,
        }
    }

    /// True once batches may be submitted.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Batches sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The server's version, once it told us.
    pub fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    /// The bytes to send now.
    pub fn take_output(&mut self) -> BytesMut {
        self.out.split()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queues a Terminate (an orderly goodbye before closing).
    pub fn terminate(&mut self) {
        frontend::terminate(&mut self.out);
    }

    /// Queues one batch: Bind and Execute for each query, then one Sync. Fails when the
    /// connection is not ready, a statement index is unknown, or a parameter does not
    /// encode; nothing is queued then.
    pub fn submit(&mut self, queries: &[Query]) -> Result<BatchId, PgError> {
        if !self.is_ready() {
            return Err(PgError::Unavailable("the connection is not ready".into()));
        }
        let mark = self.out.len();
        for q in queries {
            if let Err(e) = self.encode(q) {
                self.out.truncate(mark);
                return Err(e);
            }
        }
        frontend::sync(&mut self.out);
        let id = BatchId(self.next_id);
        self.next_id += 1;
        self.in_flight.push_back(InFlight {
            id,
            results: Vec::with_capacity(queries.len()),
            current: Vec::new(),
            error: None,
        });
        Ok(id)
    }

    fn encode(&mut self, q: &Query) -> Result<(), PgError> {
        let st = self.statements.get(q.stmt).ok_or_else(|| PgError::Protocol(format!("no statement #{}", q.stmt)))?;
        if st.types.len() != q.params.len() {
            return Err(PgError::Protocol(format!(
                "{} takes {} parameters, got {}",
                st.name,
                st.types.len(),
                q.params.len()
            )));
        }
        let formats = std::iter::repeat_n(1i16, q.params.len());
        frontend::bind("", st.name, formats, q.params.iter(), encode_param, [1i16], &mut self.out).map_err(
            |e| match e {
                frontend::BindError::Conversion(e) => PgError::Protocol(format!("{}: {e}", st.name)),
                frontend::BindError::Serialization(e) => io_err(e),
            },
        )?;
        frontend::execute("", 0, &mut self.out).map_err(io_err)
    }

    /// Takes bytes from the server. An error ends the connection (the caller fails what
    /// is in flight and closes it).
    pub fn receive(&mut self, data: &[u8]) -> Result<(), PgError> {
        if matches!(self.phase, Phase::Failed) {
            return Err(PgError::Closed);
        }
        self.inbuf.extend_from_slice(data);
        loop {
            let msg = match Message::parse(&mut self.inbuf) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => return self.fail(PgError::Protocol(format!("bad message: {e}"))),
            };
            if let Err(e) = self.handle(msg) {
                return self.fail(e);
            }
        }
    }

    fn fail(&mut self, e: PgError) -> Result<(), PgError> {
        self.phase = Phase::Failed;
        Err(e)
    }

    fn handle(&mut self, msg: Message) -> Result<(), PgError> {
        match msg {
            Message::ParameterStatus(p) => {
                if p.name().map_err(io_err)? == "server_version" {
                    self.server_version = Some(p.value().map_err(io_err)?.to_string());
                }
                return Ok(());
            }
            Message::NoticeResponse(_) | Message::NotificationResponse(_) | Message::BackendKeyData(_) => {
                return Ok(());
            }
            _ => {}
        }
        match &mut self.phase {
            Phase::Startup | Phase::Sasl(_) => self.authenticate(msg),
            Phase::Authenticated => match msg {
                Message::AuthenticationOk => Ok(()), // after SCRAM's final message
                Message::ReadyForQuery(_) => {
                    for st in self.statements {
                        frontend::parse(st.name, st.sql, st.types.iter().copied(), &mut self.out).map_err(io_err)?;
                    }
                    frontend::sync(&mut self.out);
                    self.phase = Phase::Preparing;
                    Ok(())
                }
                Message::ErrorResponse(b) => Err(server_error(b.fields())),
                _ => Err(PgError::Protocol("unexpected message after authentication".into())),
            },
            Phase::Preparing => match msg {
                Message::ParseComplete => Ok(()),
                Message::ReadyForQuery(_) => {
                    self.phase = Phase::Ready;
                    self.events.push_back(Event::Ready);
                    Ok(())
                }
                Message::ErrorResponse(b) => Err(server_error(b.fields())),
                _ => Err(PgError::Protocol("unexpected message while preparing statements".into())),
            },
            Phase::Ready => self.batch_message(msg),
            Phase::Failed => Err(PgError::Closed),
        }
    }

    fn authenticate(&mut self, msg: Message) -> Result<(), PgError> {
        let password = self.params.password.as_bytes();
        match msg {
            Message::AuthenticationOk => {
                if let Phase::Sasl(_) = self.phase {
                    return Err(PgError::Auth("the server ended SCRAM without its final message".into()));
                }
                self.phase = Phase::Authenticated;
            }
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password, &mut self.out).map_err(io_err)?;
            }
            Message::AuthenticationMd5Password(b) => {
                let hash = md5_hash(self.params.user.as_bytes(), password, b.salt());
                frontend::password_message(hash.as_bytes(), &mut self.out).map_err(io_err)?;
            }
            Message::AuthenticationSasl(b) => {
                let mut mechs = b.mechanisms();
                let mut scram = false;
                while let Some(m) = mechs.next().map_err(io_err)? {
                    scram |= m == SCRAM_SHA_256;
                }
                if !scram {
                    return Err(PgError::Auth("the server offers no SASL mechanism we speak (SCRAM-SHA-256)".into()));
                }
                let s = ScramSha256::new(password, ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.out).map_err(io_err)?;
                self.phase = Phase::Sasl(Box::new(s));
            }
            Message::AuthenticationSaslContinue(b) => {
                let Phase::Sasl(s) = &mut self.phase else {
                    return Err(PgError::Protocol("SASL continue outside SASL".into()));
                };
                s.update(b.data()).map_err(|e| PgError::Auth(format!("SCRAM: {e}")))?;
                frontend::sasl_response(s.message(), &mut self.out).map_err(io_err)?;
            }
            Message::AuthenticationSaslFinal(b) => {
                let Phase::Sasl(s) = &mut self.phase else {
                    return Err(PgError::Protocol("SASL final outside SASL".into()));
                };
                s.finish(b.data()).map_err(|e| PgError::Auth(format!("SCRAM: the server's proof is wrong: {e}")))?;
                self.phase = Phase::Authenticated;
            }
            Message::ErrorResponse(b) => {
                return Err(match server_error(b.fields()) {
                    PgError::Server { code, message, .. } if code.starts_with("28") => {
                        PgError::Auth(format!("{message} (SQLSTATE {code})"))
                    }
                    e => e,
                });
            }
            _ => return Err(PgError::Auth("the server asked for an authentication method we do not speak".into())),
        }
        Ok(())
    }

    fn batch_message(&mut self, msg: Message) -> Result<(), PgError> {
        if let Message::ErrorResponse(b) = &msg {
            let e = server_error(b.fields());
            if let PgError::Server { severity, .. } = &e {
                if severity == "FATAL" || severity == "PANIC" {
                    return Err(e); // the server is closing the connection
                }
            }
            let Some(f) = self.in_flight.front_mut() else { return Err(e) };
            f.error.get_or_insert(e);
            return Ok(());
        }
        let Some(f) = self.in_flight.front_mut() else {
            return Err(PgError::Protocol("a message with no batch in flight".into()));
        };
        match msg {
            Message::BindComplete | Message::NoData | Message::PortalSuspended => {}
            Message::DataRow(row) => f.current.push(row),
            Message::CommandComplete(_) | Message::EmptyQueryResponse => {
                let rows = std::mem::take(&mut f.current);
                f.results.push(Rows { rows });
            }
            Message::ReadyForQuery(_) => {
                let Some(f) = self.in_flight.pop_front() else { unreachable!("front checked above") };
                let result = match f.error {
                    Some(e) => Err(e),
                    None => Ok(f.results),
                };
                self.events.push_back(Event::Done { id: f.id, result });
            }
            _ => return Err(PgError::Protocol("unexpected message in a batch".into())),
        }
        Ok(())
    }
}

type EncodeResult = Result<IsNull, Box<dyn std::error::Error + Sync + Send>>;

fn encode_param(p: &Param, buf: &mut BytesMut) -> EncodeResult {
    match p {
        Param::Int4(v) => types::int4_to_sql(*v, buf),
        Param::Text(s) => types::text_to_sql(s, buf),
        Param::Int4Array(vs) => {
            let dim = ArrayDimension { len: i32::try_from(vs.len())?, lower_bound: 1 };
            types::array_to_sql(
                [dim],
                oid::INT4,
                vs.iter(),
                |v, buf| {
                    types::int4_to_sql(*v, buf);
                    Ok(IsNull::No)
                },
                buf,
            )?;
        }
    }
    Ok(IsNull::No)
}

#[cfg(test)]
mod tests;
