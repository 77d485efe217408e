//! pyo3 glue: the private `pypoints._core` module. Commands cross as tuples (one allocation per
//! item, no dicts); records come back as msgpack bytes or small tuples. Every call that touches
//! LMDB or waits for the writer goes through `detached`, which releases the GIL.
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::audit;
use crate::command::{Command, Envelope, OtpSpec, Order, Receipt as CoreReceipt};
use crate::engine::{Engine as CoreEngine, Outcome, Pending};
use crate::error::LedgerError;
use crate::limits;
use crate::model::*;
use crate::query;
use crate::rules;
use crate::store::{encode, Durability};

/// Build the Python exception (owned by pypoints/errors.py) for a ledger error.
fn error_object<'py>(py: Python<'py>, e: &LedgerError) -> PyResult<Bound<'py, PyAny>> {
    let errors = py.import("pypoints.errors")?;
    errors.getattr("from_code")?.call1((e.code(), e.to_string()))
}

fn to_pyerr(py: Python<'_>, e: LedgerError) -> PyErr {
    match error_object(py, &e) {
        Ok(obj) => PyErr::from_value(obj),
        Err(err) => err,
    }
}

/// The one helper every heavy call goes through: run `f` without the GIL, raise typed errors.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, LedgerError> + Send) -> PyResult<T> {
    py.detach(f).map_err(|e| to_pyerr(py, e))
}

#[pyclass(frozen, module = "pypoints._core")]
pub struct Receipt {
    #[pyo3(get)]
    id: String,
    #[pyo3(get)]
    seq: u64,
    #[pyo3(get)]
    kind: &'static str,
    #[pyo3(get)]
    amount: i64,
    #[pyo3(get)]
    credited: i64,
    #[pyo3(get)]
    lots_used: Vec<(String, u64, i64)>,
    #[pyo3(get)]
    lots_made: Vec<(String, u64, i64)>,
    #[pyo3(get)]
    entries: u32,
    #[pyo3(get)]
    cursor: Option<String>,
    #[pyo3(get)]
    replayed: bool,
}

#[pymethods]
impl Receipt {
    fn __repr__(&self) -> String {
        format!(
            "Receipt(id={:?}, seq={}, kind={:?}, amount={}, replayed={})",
            self.id, self.seq, self.kind, self.amount, self.replayed
        )
    }
}

impl From<CoreReceipt> for Receipt {
    fn from(r: CoreReceipt) -> Self {
        Receipt {
            id: r.id,
            seq: r.seq,
            kind: r.kind,
            amount: r.amount,
            credited: r.credited,
            // point type names become Python strings here, on the caller's thread
            lots_used: r.lots_used.into_iter().map(|(t, i, n)| (t.into_string(), i, n)).collect(),
            lots_made: r.lots_made.into_iter().map(|(t, i, n)| (t.into_string(), i, n)).collect(),
            entries: r.entries,
            cursor: r.cursor,
            replayed: r.replayed,
        }
    }
}

// ----- tuple → command -----

struct Fields<'a, 'py> {
    t: &'a Bound<'py, PyTuple>,
    op: String,
}

fn bad(op: &str, i: usize, what: &str) -> LedgerError {
    LedgerError::InvalidArgument(format!("{op}: field {i} must be {what}"))
}

impl<'py> Fields<'_, 'py> {
    fn item(&self, i: usize) -> Result<Bound<'py, PyAny>, LedgerError> {
        self.t.get_item(i).map_err(|_| LedgerError::InvalidArgument(format!("{}: missing field {i}", self.op)))
    }
    fn str(&self, i: usize) -> Result<String, LedgerError> {
        self.item(i)?.extract::<String>().map_err(|_| bad(&self.op, i, "a string"))
    }
    fn opt_str(&self, i: usize) -> Result<Option<String>, LedgerError> {
        let v = self.item(i)?;
        if v.is_none() { Ok(None) } else { v.extract::<String>().map(Some).map_err(|_| bad(&self.op, i, "a string or None")) }
    }
    fn int(&self, i: usize) -> Result<i64, LedgerError> {
        let v = self.item(i)?;
        if v.is_instance_of::<pyo3::types::PyBool>() {
            return Err(bad(&self.op, i, "an integer"));
        }
        v.extract::<i64>().map_err(|_| bad(&self.op, i, "an integer within 64 bits"))
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, LedgerError> {
        if self.item(i)?.is_none() { Ok(None) } else { self.int(i).map(Some) }
    }
    fn bool(&self, i: usize) -> Result<bool, LedgerError> {
        self.item(i)?.extract::<bool>().map_err(|_| bad(&self.op, i, "a bool"))
    }
    fn strs(&self, i: usize) -> Result<Vec<String>, LedgerError> {
        self.item(i)?.extract::<Vec<String>>().map_err(|_| bad(&self.op, i, "a list of strings"))
    }
    fn tuple(&self, i: usize) -> Result<Bound<'py, PyTuple>, LedgerError> {
        self.item(i)?.cast_into::<PyTuple>().map_err(|_| bad(&self.op, i, "a tuple"))
    }
    fn sub<'b>(&self, t: &'b Bound<'py, PyTuple>, what: &str) -> Fields<'b, 'py> {
        Fields { t, op: format!("{}.{what}", self.op) }
    }
    /// An optional trailing field: absent (shorter tuple) or None.
    fn has(&self, i: usize) -> bool {
        self.t.len() > i && !self.t.get_item(i).map(|v| v.is_none()).unwrap_or(true)
    }
    /// `(hash, attempts, sealed bytes)` of a hold's one-time code.
    fn otp(&self, i: usize) -> Result<Option<OtpSpec>, LedgerError> {
        if !self.has(i) {
            return Ok(None);
        }
        let t = self.tuple(i)?;
        let of = self.sub(&t, "otp");
        let sealed = of.item(2)?.extract::<Vec<u8>>().map_err(|_| bad(&of.op, 2, "bytes"))?;
        Ok(Some(OtpSpec { hash: of.str(0)?, attempts: to_u32(of.int(1)?, "otp attempts")?, sealed }))
    }
    fn order(&self, i: usize) -> Result<Order, LedgerError> {
        Ok(Order { channel: self.str(i)?, merchant: self.str(i + 1)?, order_ref: self.str(i + 2)?, org: self.str(i + 3)? })
    }
}

fn to_u32(v: i64, what: &str) -> Result<u32, LedgerError> {
    u32::try_from(v).map_err(|_| LedgerError::InvalidArgument(format!("{what} out of range")))
}

fn parse_point_type(f: &Fields<'_, '_>) -> Result<PointType, LedgerError> {
    let v = f.tuple(6)?;
    let vf = f.sub(&v, "validity");
    let validity = match vf.str(0)?.as_str() {
        "none" => Validity::None,
        "rolling" => {
            let unit = match vf.str(2)?.as_str() {
                "days" => PeriodUnit::Days,
                "months" => PeriodUnit::Months,
                "years" => PeriodUnit::Years,
                u => return Err(LedgerError::InvalidArgument(format!("validity unit {u:?} is not days, months or years"))),
            };
            Validity::Rolling { count: to_u32(vf.int(1)?, "validity count")?, unit }
        }
        "fixed_date" => Validity::FixedDate { month: to_u32(vf.int(1)?, "month")?, day: to_u32(vf.int(2)?, "day")? },
        k => return Err(LedgerError::InvalidArgument(format!("validity kind {k:?} is not none, rolling or fixed_date"))),
    };
    let c = f.tuple(8)?;
    let cf = f.sub(&c, "cash");
    let cash = CashRate { points: cf.int(0)?, minor: cf.int(1)?, min_points: cf.int(2)?, step_points: cf.int(3)?, max_points: cf.opt_int(4)? };
    let list = f.item(9)?;
    let list = list.cast::<PyList>().map_err(|_| bad(&f.op, 9, "a list"))?;
    let mut convert_to = vec![];
    for item in list.iter() {
        let t = item.cast_into::<PyTuple>().map_err(|_| bad(&f.op, 9, "a list of (to, num, den) tuples"))?;
        let rf = f.sub(&t, "convert_to");
        convert_to.push(ConvertRate { to: rf.str(0)?, num: rf.int(1)?, den: rf.int(2)? });
    }
    let priority = i32::try_from(f.int(5)?).map_err(|_| LedgerError::InvalidArgument("priority out of range".into()))?;
    Ok(PointType { id: f.str(4)?, priority, validity, transferable: f.bool(7)?, cash, convert_to })
}

/// A rules record (rule, campaign, tiers, policy) crosses as msgpack bytes of its map.
fn record<T: serde::de::DeserializeOwned>(f: &Fields<'_, '_>, i: usize, what: &str) -> Result<T, LedgerError> {
    let b = f.item(i)?;
    let b = b.cast::<PyBytes>().map_err(|_| bad(&f.op, i, "msgpack bytes"))?;
    rmp_serde::from_slice(b.as_bytes()).map_err(|e| LedgerError::InvalidRule(format!("{what}: {e}")))
}

/// `(kind, member, amount, term_days, channel, merchant, category, org, attrs)` from field `i`.
fn parse_event(f: &Fields<'_, '_>, i: usize) -> Result<rules::Event, LedgerError> {
    let attrs = f.item(i + 8)?.extract::<Vec<(String, String)>>().map_err(|_| bad(&f.op, i + 8, "a list of (key, value) string pairs"))?;
    let term = f.int(i + 3)?;
    let term_days = u32::try_from(term).map_err(|_| LedgerError::InvalidArgument(format!("event.term_days: must be 0..={}", limits::EVENT_TERM_DAYS_MAX)))?;
    Ok(rules::Event {
        kind: f.str(i)?,
        member: f.str(i + 1)?,
        amount: f.int(i + 2)?,
        term_days,
        channel: f.str(i + 4)?,
        merchant: f.str(i + 5)?,
        category: f.str(i + 6)?,
        org: f.strs(i + 7)?,
        attrs,
    })
}

fn parse(obj: &Bound<'_, PyAny>) -> Result<Envelope, LedgerError> {
    let t = obj.cast::<PyTuple>().map_err(|_| LedgerError::InvalidArgument("a command is a tuple (op, id, at, ...)".into()))?;
    let op: String = t
        .get_item(0)
        .and_then(|o| o.extract::<String>().map_err(PyErr::from))
        .map_err(|_| LedgerError::InvalidArgument("a command starts with its op name".into()))?;
    let f = Fields { t, op };
    let id = f.str(1)?;
    let at = f.int(2)?;
    let cmd = match f.op.as_str() {
        "define_programme" => Command::DefineProgramme { programme: f.str(3)?, name: f.str(4)? },
        "define_point_type" => Command::DefinePointType { programme: f.str(3)?, point_type: parse_point_type(&f)? },
        "open_member" => Command::OpenMember {
            member: f.str(3)?,
            programme: f.str(4)?,
            phone: f.str(5)?,
            id_hash: f.opt_str(6)?,
            org: f.strs(7)?,
            tier: f.str(8)?,
            kind: f.str(9)?,
        },
        "credit" => Command::Credit { member: f.str(3)?, point_type: f.str(4)?, amount: f.int(5)?, effective_at: f.opt_int(6)?, memo: f.str(7)? },
        "redeem" => Command::Redeem { member: f.str(3)?, point_type: f.opt_str(4)?, amount: f.int(5)?, order: f.order(6)? },
        "hold" => Command::Hold { member: f.str(3)?, point_type: f.opt_str(4)?, amount: f.int(5)?, ttl_ms: f.int(6)?, order: f.order(7)?, otp: f.otp(11)? },
        "capture" => Command::Capture { hold: f.str(3)?, amount: f.opt_int(4)?, otp: if f.has(5) { Some(f.str(5)?) } else { None } },
        "void" => Command::Void { hold: f.str(3)? },
        "transfer" => Command::Transfer { from: f.str(3)?, to: f.str(4)?, point_type: f.str(5)?, amount: f.int(6)? },
        "convert" => Command::Convert { member: f.str(3)?, from_type: f.str(4)?, to_type: f.str(5)?, amount: f.int(6)? },
        "reverse" => {
            let ratio = match f.item(5)? {
                r if r.is_none() => None,
                _ => {
                    let r = f.tuple(5)?;
                    let rf = f.sub(&r, "ratio");
                    Some((rf.int(0)?, rf.int(1)?))
                }
            };
            Command::Reverse { target: f.str(3)?, amount: f.opt_int(4)?, ratio, reason: f.str(6)? }
        }
        "expire" => Command::Expire { as_of: f.int(3)?, after: f.opt_str(4)? },
        "freeze" => Command::Freeze { member: f.str(3)?, reason: f.str(4)? },
        "unfreeze" => Command::Unfreeze { member: f.str(3)?, reason: f.str(4)? },
        "bind_card" => Command::BindCard { member: f.str(3)?, card: f.str(4)? },
        "unbind_card" => Command::UnbindCard { member: f.str(3)?, card: f.str(4)?, reason: f.str(5)? },
        "earn" => Command::Earn { event: parse_event(&f, 3)? },
        "define_rule" => Command::DefineRule { rule: record(&f, 3, "rule")? },
        "update_rule" => Command::UpdateRule { rule: record(&f, 3, "rule")? },
        "disable_rule" => Command::DisableRule { programme: f.str(3)?, rule: f.str(4)? },
        "define_campaign" => Command::DefineCampaign { campaign: record(&f, 3, "campaign")? },
        "define_tiers" => Command::DefineTiers { tiers: record(&f, 3, "tiers")? },
        "set_earn_policy" => Command::SetEarnPolicy { policy: record(&f, 3, "policy")? },
        "set_member_groups" => Command::SetMemberGroups { member: f.str(3)?, groups: f.strs(4)? },
        "set_tier" => Command::SetTier { member: f.str(3)?, tier: f.opt_str(4)?, reason: f.str(5)? },
        "evaluate_tiers" => Command::EvaluateTiers { programme: f.str(3)?, after: f.opt_str(4)? },
        op => return Err(LedgerError::InvalidArgument(format!("unknown command {op:?}"))),
    };
    Ok(Envelope { id, at, cmd })
}

fn outcome_object(py: Python<'_>, r: Outcome) -> PyResult<Py<PyAny>> {
    match r {
        Ok(r) => Ok(Py::new(py, Receipt::from(r))?.into_any()),
        Err(e) => Ok(error_object(py, &e)?.unbind()),
    }
}

#[pyclass(frozen, module = "pypoints._core")]
pub struct Engine {
    inner: std::sync::Mutex<Option<Arc<CoreEngine>>>,
    #[pyo3(get)]
    path: String,
}

impl Engine {
    fn engine(&self, py: Python<'_>) -> PyResult<Arc<CoreEngine>> {
        self.inner.lock().unwrap().clone().ok_or_else(|| to_pyerr(py, LedgerError::Closed))
    }
}

#[pymethods]
impl Engine {
    #[new]
    #[pyo3(signature = (path, map_size_bytes = limits::MAP_SIZE_BYTES_DEFAULT, durability = "sync"))]
    fn new(py: Python<'_>, path: PathBuf, map_size_bytes: usize, durability: &str) -> PyResult<Self> {
        let d = match durability {
            "sync" => Durability::Sync,
            "no_sync_bulk_load" => Durability::NoSyncBulkLoad,
            other => return Err(to_pyerr(py, LedgerError::InvalidArgument(format!("durability {other:?} is not sync or no_sync_bulk_load")))),
        };
        let p = path.clone();
        let engine = detached(py, move || CoreEngine::open(&p, map_size_bytes, d))?;
        Ok(Engine { inner: std::sync::Mutex::new(Some(engine)), path: path.display().to_string() })
    }

    /// Apply a batch of command tuples; each result is a Receipt or an exception instance.
    fn submit(&self, py: Python<'_>, commands: &Bound<'_, PyList>) -> PyResult<Vec<Py<PyAny>>> {
        let engine = self.engine(py)?;
        if commands.len() > limits::BATCH_SIZE_MAX {
            return Err(to_pyerr(py, LedgerError::LimitExceeded(format!("a batch holds at most {} commands", limits::BATCH_SIZE_MAX))));
        }
        // Parse a chunk, queue it (GIL released), parse the next while the writer applies it.
        let mut parsed: Vec<Result<(), LedgerError>> = Vec::with_capacity(commands.len());
        let mut pending = Vec::with_capacity(commands.len().div_ceil(limits::SUBMIT_CHUNK_COMMANDS));
        let mut good = Vec::with_capacity(limits::SUBMIT_CHUNK_COMMANDS);
        // A full chunk goes once the next good command is parsed: the writer is told truly
        // whether more of the batch follows (it keeps its group open for it).
        for item in commands.iter() {
            parsed.push(parse(&item).map(|env| {
                // the first chunk small: the writer starts on it while the rest is parsed
                let chunk_max = if pending.is_empty() { limits::SUBMIT_FIRST_CHUNK_COMMANDS } else { limits::SUBMIT_CHUNK_COMMANDS };
                if good.len() == chunk_max {
                    let (e, chunk) = (engine.clone(), std::mem::take(&mut good));
                    pending.push(detached(py, move || e.submit_async_part(chunk, true)));
                }
                good.push(env)
            }));
            if let Some(Err(_)) = pending.last() {
                break;
            }
        }
        if !good.is_empty() {
            let (e, chunk) = (engine.clone(), std::mem::take(&mut good));
            pending.push(detached(py, move || e.submit_async_part(chunk, false)));
        }
        let pending = pending.into_iter().collect::<PyResult<Vec<_>>>()?;
        // Build each chunk's Python results as soon as the writer has applied it, while it
        // applies the chunks after it and commits (`PendingChunk::applied`); hand them out once
        // durable. In input order, parse errors in their places.
        let mut out = Vec::with_capacity(parsed.len());
        let mut parsed = parsed.into_iter().peekable();
        let mut chunks = Vec::with_capacity(pending.len());
        for p in pending.into_iter().flat_map(Pending::into_chunks) {
            let (p, results) = detached(py, move || {
                let mut p = p;
                p.applied().map(|r| (p, r))
            })?;
            let mut results = results.into_iter().peekable();
            let mut at = vec![];
            loop {
                let r = match parsed.peek() {
                    Some(Err(_)) => Err(parsed.next().and_then(|p| p.err()).expect("peeked an error")),
                    Some(Ok(())) if results.peek().is_some() => {
                        parsed.next();
                        at.push(out.len());
                        results.next().expect("peeked")
                    }
                    _ => break,
                };
                out.push(outcome_object(py, r)?);
            }
            debug_assert!(results.next().is_none(), "one result per queued command");
            chunks.push((p, at));
        }
        for p in parsed {
            let e = p.err().expect("every queued command has its result");
            out.push(outcome_object(py, Err(e))?);
        }
        // A group refused (a storage failure) refuses each of its commands.
        for (p, at) in chunks {
            if let Err(e) = detached(py, move || p.durable())? {
                for i in at {
                    out[i] = outcome_object(py, Err(e.clone()))?;
                }
            }
        }
        debug_assert_eq!(out.len(), commands.len());
        Ok(out)
    }

    /// Apply one command tuple; raise its typed error.
    fn execute(&self, py: Python<'_>, command: &Bound<'_, PyAny>) -> PyResult<Receipt> {
        let engine = self.engine(py)?;
        let env = parse(command).map_err(|e| to_pyerr(py, e))?;
        detached(py, move || engine.submit_one(env)).map(Receipt::from)
    }

    /// (point_type, total, available, pending, held) per point type, in spending order.
    #[pyo3(signature = (member, point_type, now_ms))]
    fn balances(&self, py: Python<'_>, member: String, point_type: Option<String>, now_ms: i64) -> PyResult<Vec<(String, i64, i64, i64, i64)>> {
        let e = self.engine(py)?;
        let rows = detached(py, move || query::balances(&e.store, &member, point_type.as_deref(), now_ms))?;
        Ok(rows.into_iter().map(|b| (b.point_type, b.total, b.available, b.pending, b.held)).collect())
    }

    /// ([(point_type, lot_id, remaining, amount, earned_at, expires_at, effective_at, source_seq)], next_token)
    #[allow(clippy::type_complexity)]
    fn lots(&self, py: Python<'_>, member: String, point_type: Option<String>, page_size: usize, page_token: String) -> PyResult<(Vec<(String, u64, i64, i64, i64, Option<i64>, i64, u64)>, String)> {
        let e = self.engine(py)?;
        let (rows, next) = detached(py, move || query::lots(&e.store, &member, point_type.as_deref(), page_size, &page_token))?;
        Ok((rows.into_iter().map(|(t, l)| (t, l.i, l.r, l.a, l.e, l.x, l.f, l.s)).collect(), next))
    }

    /// ([msgpack entry], next_token), newest first.
    fn history<'py>(&self, py: Python<'py>, member: String, point_type: Option<String>, page_size: usize, page_token: String) -> PyResult<(Vec<Bound<'py, PyBytes>>, String)> {
        let e = self.engine(py)?;
        let (rows, next) = detached(py, move || {
            let (es, next) = query::history(&e.store, &member, point_type.as_deref(), page_size, &page_token)?;
            Ok((es.iter().map(encode).collect::<Vec<_>>(), next))
        })?;
        Ok((rows.into_iter().map(|b| PyBytes::new(py, &b)).collect(), next))
    }

    /// msgpack entries written by the command with this client id.
    fn entries_of<'py>(&self, py: Python<'py>, id: String) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let e = self.engine(py)?;
        let rows = detached(py, move || Ok(query::entries_of(&e.store, &id)?.iter().map(encode).collect::<Vec<_>>()))?;
        Ok(rows.into_iter().map(|b| PyBytes::new(py, &b)).collect())
    }

    /// msgpack journal entries from `from_seq` on, in order.
    fn journal<'py>(&self, py: Python<'py>, from_seq: u64, page_size: usize) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let e = self.engine(py)?;
        let rows = detached(py, move || Ok(query::journal(&e.store, from_seq, page_size)?.iter().map(encode).collect::<Vec<_>>()))?;
        Ok(rows.into_iter().map(|b| PyBytes::new(py, &b)).collect())
    }

    fn member<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyBytes>> {
        let e = self.engine(py)?;
        let b = detached(py, move || Ok(encode(&query::member(&e.store, &id)?)))?;
        Ok(PyBytes::new(py, &b))
    }

    /// msgpack members bound to a phone (`kind` "phone"), an ID-number hash ("id_hash") or a
    /// card number ("card").
    fn find_members<'py>(&self, py: Python<'py>, kind: String, value: String) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let e = self.engine(py)?;
        let rows = detached(py, move || Ok(query::find_members(&e.store, &kind, &value)?.iter().map(encode).collect::<Vec<_>>()))?;
        Ok(rows.into_iter().map(|b| PyBytes::new(py, &b)).collect())
    }

    fn programme<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyBytes>> {
        let e = self.engine(py)?;
        let b = detached(py, move || Ok(encode(&query::programme(&e.store, &id)?)))?;
        Ok(PyBytes::new(py, &b))
    }

    fn hold<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyBytes>> {
        let e = self.engine(py)?;
        let b = detached(py, move || Ok(encode(&query::hold(&e.store, &id)?)))?;
        Ok(PyBytes::new(py, &b))
    }

    /// Up to `limit` undelivered notifications, oldest first: [(key, msgpack message)].
    fn outbox_peek<'py>(&self, py: Python<'py>, limit: usize) -> PyResult<Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let e = self.engine(py)?;
        let rows = detached(py, move || e.store.outbox_peek(limit.min(limits::PAGE_SIZE_MAX)))?;
        Ok(rows.into_iter().map(|(k, v)| (PyBytes::new(py, &k), PyBytes::new(py, &v))).collect())
    }

    /// Delete delivered notifications by key (one durable transaction); returns how many.
    fn outbox_delete(&self, py: Python<'_>, keys: Vec<Vec<u8>>) -> PyResult<usize> {
        let e = self.engine(py)?;
        detached(py, move || e.store.outbox_delete(&keys))
    }

    /// Submissions waiting for the writer right now (the bounded queue's depth).
    fn queue_depth(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.engine(py)?.queue_depth())
    }

    /// Write the state log back into the B-trees, after every batch queued before (GIL released).
    fn checkpoint(&self, py: Python<'_>) -> PyResult<()> {
        let e = self.engine(py)?;
        detached(py, move || e.checkpoint())
    }

    /// The writer's counters since the engine opened: groups, commands, apply/flush/commit ns,
    /// checkpoints, room ns.
    fn stats(&self, py: Python<'_>) -> PyResult<std::collections::HashMap<&'static str, u64>> {
        Ok(self.engine(py)?.stats.snapshot().into_iter().collect())
    }

    /// (entries, accounts, problems): an independent re-check of the whole store.
    fn audit(&self, py: Python<'_>) -> PyResult<(u64, u64, Vec<String>)> {
        let e = self.engine(py)?;
        let r = detached(py, move || audit::audit(&e.store))?;
        Ok((r.entries, r.accounts, r.problems))
    }

    /// Evaluate an earn command tuple against the committed state without posting: msgpack of
    /// {awards, notes, tier_change}.
    fn dry_run<'py>(&self, py: Python<'py>, command: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let e = self.engine(py)?;
        let env = parse(command).map_err(|err| to_pyerr(py, err))?;
        let Command::Earn { event } = env.cmd else {
            return Err(to_pyerr(py, LedgerError::InvalidArgument("dry_run takes an earn command".into())));
        };
        let b = detached(py, move || Ok(encode(&rules::dry_run(&e.store, env.at, &event)?)))?;
        Ok(PyBytes::new(py, &b))
    }

    /// msgpack rules of a programme: the latest version of each (`rule` given: every version).
    #[pyo3(signature = (programme, rule = None))]
    fn rules<'py>(&self, py: Python<'py>, programme: String, rule: Option<String>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let e = self.engine(py)?;
        let rows = detached(py, move || {
            let txn = e.store.read_txn()?;
            let rs = match rule {
                Some(r) => rules::rule_versions(&e.store, &txn, &programme, &r)?,
                None => rules::current_rules(&e.store, &txn, &programme)?,
            };
            Ok(rs.iter().map(encode).collect::<Vec<_>>())
        })?;
        Ok(rows.into_iter().map(|b| PyBytes::new(py, &b)).collect())
    }

    /// (msgpack campaign, points granted from its budget, points left) (CP-13).
    fn campaign_status<'py>(&self, py: Python<'py>, programme: String, campaign: String) -> PyResult<(Bound<'py, PyBytes>, i64, i64)> {
        let e = self.engine(py)?;
        let st = detached(py, move || rules::campaign_status(&e.store, &programme, &campaign))?;
        Ok((PyBytes::new(py, &encode(&st.campaign)), st.granted, st.left))
    }

    /// msgpack of the programme's current tier policy (TL-1..5), or None when it has none.
    fn tiers<'py>(&self, py: Python<'py>, programme: String) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let e = self.engine(py)?;
        let b = detached(py, move || {
            crate::query::programme(&e.store, &programme)?;
            let txn = e.store.read_txn()?;
            Ok(rules::tiers(&e.store, &txn, &programme)?.map(|t| encode(&t)))
        })?;
        Ok(b.map(|b| PyBytes::new(py, &b)))
    }

    /// msgpack of a member's rule state (cap counters, streak, referral, qualification).
    fn rule_state<'py>(&self, py: Python<'py>, member: String) -> PyResult<Bound<'py, PyBytes>> {
        let e = self.engine(py)?;
        let b = detached(py, move || {
            let txn = e.store.read_txn()?;
            Ok(encode(&rules::member_state(&e.store, &txn, &member)?))
        })?;
        Ok(PyBytes::new(py, &b))
    }

    /// Zero-fill the data file `bytes` past its used part; returns the bytes written.
    fn preallocate(&self, py: Python<'_>, bytes: u64) -> PyResult<u64> {
        let e = self.engine(py)?;
        detached(py, move || e.preallocate(bytes))
    }

    /// Consistent hot copy of the environment into `dest_dir`.
    fn backup(&self, py: Python<'_>, dest_dir: PathBuf) -> PyResult<()> {
        let e = self.engine(py)?;
        detached(py, move || e.backup(&dest_dir))
    }

    /// Release this handle; later calls on it raise LedgerClosed. Handles on the same directory
    /// share one engine, which drains its queue and stops its writer when the last is released.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.inner.lock().unwrap().take();
        if let Some(e) = engine {
            // Dropping the last Arc joins the writer thread: do it without the GIL.
            detached(py, move || {
                drop(e);
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// Cash value of an order under a rate (RD-20): (points used, minor units) or InvalidArgument.
#[pyfunction]
#[pyo3(signature = (asked, points, minor, min_points, step_points, max_points))]
fn quote_cash(py: Python<'_>, asked: i64, points: i64, minor: i64, min_points: i64, step_points: i64, max_points: Option<i64>) -> PyResult<(i64, i64)> {
    let rate = CashRate { points, minor, min_points, step_points, max_points };
    let r = rate.check().and_then(|_| rate.usable_points(asked)).map(|used| (used, rate.cash_minor(used)));
    r.map_err(|e| to_pyerr(py, e))
}

/// Keyed hash of a national ID number (RK-9): the clear number is never stored.
#[pyfunction]
fn hash_id_number(number: &str) -> String {
    blake3::derive_key("pypoints 2026 member id-number v1", number.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<Receipt>()?;
    m.add_function(wrap_pyfunction!(quote_cash, m)?)?;
    m.add_function(wrap_pyfunction!(hash_id_number, m)?)?;
    m.add("BATCH_SIZE_MAX", limits::BATCH_SIZE_MAX)?;
    m.add("ID_LENGTH_MAX", limits::ID_LENGTH_MAX)?;
    m.add("TEXT_LENGTH_MAX", limits::TEXT_LENGTH_MAX)?;
    m.add("AMOUNT_MAX", limits::AMOUNT_MAX)?;
    m.add("PAGE_SIZE_MAX", limits::PAGE_SIZE_MAX)?;
    m.add("PAGE_SIZE_DEFAULT", limits::PAGE_SIZE_DEFAULT)?;
    m.add("GROUP_COMMIT_COMMANDS_MAX", limits::GROUP_COMMIT_COMMANDS_MAX)?;
    m.add("SUBMIT_CHUNK_COMMANDS", limits::SUBMIT_CHUNK_COMMANDS)?;
    m.add("SUBMIT_FIRST_CHUNK_COMMANDS", limits::SUBMIT_FIRST_CHUNK_COMMANDS)?;
    m.add("QUEUE_DEPTH_MAX", limits::QUEUE_DEPTH_MAX)?;
    m.add("LOTS_PER_ACCOUNT_MAX", limits::LOTS_PER_ACCOUNT_MAX)?;
    m.add("CARD_NUMBER_LENGTH_MIN", limits::CARD_NUMBER_LENGTH_MIN)?;
    m.add("CARD_NUMBER_LENGTH_MAX", limits::CARD_NUMBER_LENGTH_MAX)?;
    m.add("CARDS_PER_MEMBER_MAX", limits::CARDS_PER_MEMBER_MAX)?;
    m.add("EXPIRE_ACCOUNTS_PER_COMMAND_MAX", limits::EXPIRE_ACCOUNTS_PER_COMMAND_MAX)?;
    m.add("HOLD_TTL_MS_MIN", limits::HOLD_TTL_MS_MIN)?;
    m.add("HOLD_TTL_MS_MAX", limits::HOLD_TTL_MS_MAX)?;
    Ok(())
}
