/* hornbeam.state._lmdb: the LMDB calls of the shared state store, made with the GIL held.
 *
 * py-lmdb releases the GIL around each LMDB call (begin, get, put, commit), so that another
 * thread can run while one waits for LMDB's writer lock. In a hornbeam worker these calls
 * last a microsecond or two, and each release hands the GIL to the event loop thread, which
 * then holds it while the app thread waits to get it back: the seed Flask demo, three
 * counters per request, served 9,200-9,700 req/s on one worker with py-lmdb and
 * 10,400-11,200 with this module (wrk -c50, alternating runs). It holds the GIL throughout.
 *
 * What makes that safe is the store's discipline (backends/lmdb.py), which this module
 * enforces rather than assumes:
 *   - one environment per directory per process (a second open is refused), and one
 *     transaction at a time on it, so no thread of this process can hold LMDB's writer lock
 *     while another waits for it with the GIL: a write begin only ever waits for another
 *     process, for as long as that process's write transaction lasts;
 *   - a transaction, and each cursor, is checked on every call: using one that has ended
 *     raises Error, it never touches freed memory.
 * The environment is opened with MDB_NOTLS (a read transaction is not tied to a thread: the
 * store's calls come from whichever app thread runs them) and without syncs (tmpfs; see
 * LmdbStore). One spare read transaction is kept reset and renewed for the next read.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

static PyObject *Error;
static PyObject *MapFullError;
static PyObject *MapResizedError;
static PyObject *DiskError;
static PyObject *open_paths; /* set of bytes: the real paths of the environments open here */

static PyObject *
raise_mdb(const char *call, int rc)
{
    PyObject *type = Error;
    if (rc == MDB_MAP_FULL) {
        type = MapFullError;
    }
    else if (rc == MDB_MAP_RESIZED) {
        type = MapResizedError;
    }
    else if (rc == ENOSPC) {
        type = DiskError;
    }
    PyErr_Format(type, "%s: %s", call, mdb_strerror(rc));
    return NULL;
}

/* ---- objects --------------------------------------------------------------------------- */

typedef struct TransactionObject TransactionObject;

typedef struct {
    PyObject_HEAD
    MDB_env *env;              /* NULL once closed */
    MDB_dbi dbi;               /* the main (unnamed) database */
    MDB_txn *spare;            /* a reset read transaction, renewed by the next read */
    TransactionObject *active; /* the one open transaction (borrowed), or NULL */
    unsigned long generation;  /* bumped whenever a transaction ends: stale cursors see it */
    PyObject *real_path;       /* its entry in open_paths */
} EnvironmentObject;

struct TransactionObject {
    PyObject_HEAD
    EnvironmentObject *env;
    MDB_txn *txn; /* NULL once ended */
    int write;
};

typedef enum { UNPOSITIONED, ON_UNSEEN, ON_SEEN, EXHAUSTED } CursorState;

typedef struct {
    PyObject_HEAD
    TransactionObject *trans;
    MDB_cursor *cursor;
    unsigned long generation; /* the environment's generation when the cursor was opened */
    int write;
    CursorState state;
} CursorObject;

static PyTypeObject EnvironmentType;
static PyTypeObject TransactionType;
static PyTypeObject CursorType;

/* ---- transactions ---------------------------------------------------------------------- */

/* End `trans` (commit or abort); the return code of a write commit, else 0. */
static int
trans_end(TransactionObject *trans, int commit)
{
    EnvironmentObject *env = trans->env;
    MDB_txn *txn = trans->txn;
    int rc = 0;

    trans->txn = NULL;
    env->active = NULL;
    env->generation++;
    if (trans->write) {
        if (commit) {
            rc = mdb_txn_commit(txn); /* frees txn, also when it fails */
        }
        else {
            mdb_txn_abort(txn);
        }
    }
    else if (env->spare == NULL && env->env != NULL) {
        mdb_txn_reset(txn);
        env->spare = txn;
    }
    else {
        mdb_txn_abort(txn);
    }
    return rc;
}

static int
trans_check(TransactionObject *trans)
{
    if (trans->txn == NULL) {
        PyErr_SetString(Error, "the transaction has ended");
        return -1;
    }
    return 0;
}

static void
key_val(Py_buffer *view, MDB_val *val)
{
    val->mv_size = (size_t)view->len;
    val->mv_data = view->buf;
}

static PyObject *
trans_get(TransactionObject *self, PyObject *arg)
{
    Py_buffer key;
    MDB_val k, v;
    int rc;

    if (trans_check(self) < 0 || PyObject_GetBuffer(arg, &key, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    key_val(&key, &k);
    rc = mdb_get(self->txn, self->env->dbi, &k, &v);
    PyBuffer_Release(&key);
    if (rc == MDB_NOTFOUND) {
        Py_RETURN_NONE;
    }
    if (rc) {
        return raise_mdb("mdb_get", rc);
    }
    return PyBytes_FromStringAndSize(v.mv_data, (Py_ssize_t)v.mv_size);
}

static PyObject *
trans_put(TransactionObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer key, value;
    MDB_val k, v;
    int rc;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "put() takes a key and a value");
        return NULL;
    }
    if (trans_check(self) < 0 || PyObject_GetBuffer(args[0], &key, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &value, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    key_val(&key, &k);
    key_val(&value, &v);
    rc = mdb_put(self->txn, self->env->dbi, &k, &v, 0);
    PyBuffer_Release(&key);
    PyBuffer_Release(&value);
    if (rc) {
        return raise_mdb("mdb_put", rc);
    }
    Py_RETURN_TRUE;
}

static PyObject *
trans_delete(TransactionObject *self, PyObject *arg)
{
    Py_buffer key;
    MDB_val k;
    int rc;

    if (trans_check(self) < 0 || PyObject_GetBuffer(arg, &key, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    key_val(&key, &k);
    rc = mdb_del(self->txn, self->env->dbi, &k, NULL);
    PyBuffer_Release(&key);
    if (rc == MDB_NOTFOUND) {
        Py_RETURN_FALSE;
    }
    if (rc) {
        return raise_mdb("mdb_del", rc);
    }
    Py_RETURN_TRUE;
}

static PyObject *
trans_commit(TransactionObject *self, PyObject *Py_UNUSED(ignored))
{
    int rc;

    if (trans_check(self) < 0) {
        return NULL;
    }
    rc = trans_end(self, 1);
    if (rc) {
        return raise_mdb("mdb_txn_commit", rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
trans_abort(TransactionObject *self, PyObject *Py_UNUSED(ignored))
{
    /* A no-op on an ended transaction: a failed commit has already freed it. */
    if (self->txn != NULL) {
        trans_end(self, 0);
    }
    Py_RETURN_NONE;
}

static PyObject *
trans_cursor(TransactionObject *self, PyObject *Py_UNUSED(ignored))
{
    CursorObject *cursor;
    MDB_cursor *mc;
    int rc;

    if (trans_check(self) < 0) {
        return NULL;
    }
    rc = mdb_cursor_open(self->txn, self->env->dbi, &mc);
    if (rc) {
        return raise_mdb("mdb_cursor_open", rc);
    }
    cursor = PyObject_New(CursorObject, &CursorType);
    if (cursor == NULL) {
        mdb_cursor_close(mc);
        return NULL;
    }
    Py_INCREF(self);
    cursor->trans = self;
    cursor->cursor = mc;
    cursor->generation = self->env->generation;
    cursor->write = self->write;
    cursor->state = UNPOSITIONED;
    return (PyObject *)cursor;
}

static void
trans_dealloc(TransactionObject *self)
{
    if (self->txn != NULL) {
        trans_end(self, 0);
    }
    Py_DECREF(self->env);
    PyObject_Free(self);
}

static PyMethodDef trans_methods[] = {
    {"get", (PyCFunction)trans_get, METH_O, "The value of a key, or None."},
    {"put", (PyCFunction)(void (*)(void))trans_put, METH_FASTCALL, "Store a value under a key."},
    {"delete", (PyCFunction)trans_delete, METH_O, "Remove a key; False if it was missing."},
    {"commit", (PyCFunction)trans_commit, METH_NOARGS, "Commit and end the transaction."},
    {"abort", (PyCFunction)trans_abort, METH_NOARGS, "End the transaction, keeping nothing."},
    {"cursor", (PyCFunction)trans_cursor, METH_NOARGS, "A cursor over the keys, in order."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TransactionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hornbeam.state._lmdb.Transaction",
    .tp_basicsize = sizeof(TransactionObject),
    .tp_dealloc = (destructor)trans_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One LMDB transaction (from Environment.begin).",
    .tp_methods = trans_methods,
};

/* ---- cursors --------------------------------------------------------------------------- */

static int
cursor_check(CursorObject *self)
{
    if (self->trans->txn == NULL || self->trans->env->generation != self->generation) {
        PyErr_SetString(Error, "the cursor's transaction has ended");
        return -1;
    }
    return 0;
}

/* Move the cursor with `op`; 1 when it is on an item, 0 at the end, -1 with an error. */
static int
cursor_move(CursorObject *self, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
    int rc = mdb_cursor_get(self->cursor, k, v, op);
    if (rc == MDB_NOTFOUND) {
        self->state = EXHAUSTED;
        return 0;
    }
    if (rc) {
        raise_mdb("mdb_cursor_get", rc);
        return -1;
    }
    return 1;
}

static PyObject *
cursor_position(CursorObject *self, MDB_val *k, MDB_cursor_op op)
{
    MDB_val v;
    int found;

    if (cursor_check(self) < 0) {
        return NULL;
    }
    found = cursor_move(self, k, &v, op);
    if (found < 0) {
        return NULL;
    }
    if (found) {
        self->state = ON_UNSEEN;
    }
    return PyBool_FromLong(found);
}

static PyObject *
cursor_first(CursorObject *self, PyObject *Py_UNUSED(ignored))
{
    MDB_val k;
    return cursor_position(self, &k, MDB_FIRST);
}

static PyObject *
cursor_set_range(CursorObject *self, PyObject *arg)
{
    Py_buffer key;
    MDB_val k;
    PyObject *found;

    if (PyObject_GetBuffer(arg, &key, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    key_val(&key, &k);
    found = cursor_position(self, &k, MDB_SET_RANGE);
    PyBuffer_Release(&key);
    return found;
}

static PyObject *
cursor_iternext_method(CursorObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_INCREF(self);
    return (PyObject *)self;
}

/* Yields the item the cursor is on (if not yet yielded), then the following ones. */
static PyObject *
cursor_next(CursorObject *self)
{
    MDB_val k, v;
    MDB_cursor_op op;
    int found;

    if (self->state == EXHAUSTED) {
        return NULL;
    }
    if (cursor_check(self) < 0) {
        return NULL;
    }
    op = self->state == ON_UNSEEN ? MDB_GET_CURRENT
         : self->state == UNPOSITIONED ? MDB_FIRST
         : MDB_NEXT;
    found = cursor_move(self, &k, &v, op);
    if (found <= 0) {
        return NULL; /* StopIteration, or the error set by cursor_move */
    }
    self->state = ON_SEEN;
    return Py_BuildValue("(y#y#)", (const char *)k.mv_data, (Py_ssize_t)k.mv_size,
                         (const char *)v.mv_data, (Py_ssize_t)v.mv_size);
}

static void
cursor_dealloc(CursorObject *self)
{
    /* A cursor of a read transaction must be closed, before or after the transaction
     * ends; one of a write transaction is freed when that ends, so it is closed only
     * while the transaction lasts. */
    if (!self->write || (self->trans->txn != NULL && self->trans->env->generation == self->generation)) {
        mdb_cursor_close(self->cursor);
    }
    Py_DECREF(self->trans);
    PyObject_Free(self);
}

static PyMethodDef cursor_methods[] = {
    {"first", (PyCFunction)cursor_first, METH_NOARGS, "Move to the first key; False if none."},
    {"set_range", (PyCFunction)cursor_set_range, METH_O,
     "Move to the first key >= the given one; False if none."},
    {"iternext", (PyCFunction)cursor_iternext_method, METH_NOARGS,
     "An iterator of (key, value): the current item, then the ones after it."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CursorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hornbeam.state._lmdb.Cursor",
    .tp_basicsize = sizeof(CursorObject),
    .tp_dealloc = (destructor)cursor_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A cursor over the keys of a transaction (from Transaction.cursor).",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)cursor_next,
    .tp_methods = cursor_methods,
};

/* ---- environments ---------------------------------------------------------------------- */

static int
env_check(EnvironmentObject *self)
{
    if (self->env == NULL) {
        PyErr_SetString(Error, "the environment is closed");
        return -1;
    }
    return 0;
}

static int
env_idle_check(EnvironmentObject *self)
{
    if (env_check(self) < 0) {
        return -1;
    }
    if (self->active != NULL) {
        PyErr_SetString(Error, "a transaction is open on this environment: end it first");
        return -1;
    }
    return 0;
}

static PyObject *
env_begin(EnvironmentObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"write", NULL};
    int write = 0;
    int rc;
    MDB_txn *txn = NULL;
    TransactionObject *trans;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$p:begin", keywords, &write)) {
        return NULL;
    }
    if (env_idle_check(self) < 0) {
        return NULL;
    }
    if (!write && self->spare != NULL) {
        txn = self->spare;
        self->spare = NULL;
        if (mdb_txn_renew(txn) != 0) {
            mdb_txn_abort(txn); /* begin afresh: that reports what is wrong */
            txn = NULL;
        }
    }
    if (txn == NULL) {
        rc = mdb_txn_begin(self->env, NULL, write ? 0 : MDB_RDONLY, &txn);
        if (rc) {
            return raise_mdb("mdb_txn_begin", rc);
        }
    }
    trans = PyObject_New(TransactionObject, &TransactionType);
    if (trans == NULL) {
        mdb_txn_abort(txn);
        return NULL;
    }
    Py_INCREF(self);
    trans->env = self;
    trans->txn = txn;
    trans->write = write;
    self->active = trans;
    return (PyObject *)trans;
}

static void
env_drop_spare(EnvironmentObject *self)
{
    if (self->spare != NULL) {
        mdb_txn_abort(self->spare);
        self->spare = NULL;
    }
}

static PyObject *
env_set_mapsize(EnvironmentObject *self, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    int rc;

    if (size < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "the map size cannot be negative");
        }
        return NULL;
    }
    if (env_idle_check(self) < 0) {
        return NULL;
    }
    env_drop_spare(self); /* LMDB resizes only with no transaction in this process */
    rc = mdb_env_set_mapsize(self->env, (size_t)size);
    if (rc) {
        return raise_mdb("mdb_env_set_mapsize", rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
env_info(EnvironmentObject *self, PyObject *Py_UNUSED(ignored))
{
    MDB_envinfo info;
    int rc;

    if (env_check(self) < 0) {
        return NULL;
    }
    rc = mdb_env_info(self->env, &info);
    if (rc) {
        return raise_mdb("mdb_env_info", rc);
    }
    return Py_BuildValue("{s:n,s:n,s:n,s:I,s:I}", "map_size", (Py_ssize_t)info.me_mapsize,
                         "last_pgno", (Py_ssize_t)info.me_last_pgno, "last_txnid",
                         (Py_ssize_t)info.me_last_txnid, "max_readers", info.me_maxreaders,
                         "num_readers", info.me_numreaders);
}

static PyObject *
env_reader_check(EnvironmentObject *self, PyObject *Py_UNUSED(ignored))
{
    int dead = 0;
    int rc;

    if (env_check(self) < 0) {
        return NULL;
    }
    rc = mdb_reader_check(self->env, &dead);
    if (rc) {
        return raise_mdb("mdb_reader_check", rc);
    }
    return PyLong_FromLong(dead);
}

static PyObject *
env_sync(EnvironmentObject *self, PyObject *args)
{
    int force = 0;
    int rc;

    if (!PyArg_ParseTuple(args, "|p:sync", &force) || env_check(self) < 0) {
        return NULL;
    }
    rc = mdb_env_sync(self->env, force);
    if (rc) {
        return raise_mdb("mdb_env_sync", rc);
    }
    Py_RETURN_NONE;
}

/* Close the environment (idempotent): ends its open transaction first. Returns -1 with an
 * error set only if forgetting its path failed. */
static int
env_close_now(EnvironmentObject *self)
{
    if (self->env == NULL) {
        return 0;
    }
    if (self->active != NULL) {
        trans_end(self->active, 0);
    }
    env_drop_spare(self);
    mdb_env_close(self->env);
    self->env = NULL;
    self->generation++;
    if (self->real_path != NULL && PySet_Discard(open_paths, self->real_path) < 0) {
        return -1;
    }
    return 0;
}

static PyObject *
env_close(EnvironmentObject *self, PyObject *Py_UNUSED(ignored))
{
    if (env_close_now(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static void
env_dealloc(EnvironmentObject *self)
{
    PyObject *type, *value, *traceback;

    PyErr_Fetch(&type, &value, &traceback);
    if (env_close_now(self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    PyErr_Restore(type, value, traceback);
    Py_XDECREF(self->real_path);
    PyObject_Free(self);
}

static PyMethodDef env_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))env_begin, METH_VARARGS | METH_KEYWORDS,
     "Start a transaction: begin(write=False)."},
    {"set_mapsize", (PyCFunction)env_set_mapsize, METH_O,
     "Set the map size in bytes (0: adopt the size another process set)."},
    {"info", (PyCFunction)env_info, METH_NOARGS, "map_size, last_pgno, ... as a dict."},
    {"reader_check", (PyCFunction)env_reader_check, METH_NOARGS,
     "Free the reader slots of dead processes; return how many."},
    {"sync", (PyCFunction)env_sync, METH_VARARGS, "Flush to disk: sync(force=False)."},
    {"close", (PyCFunction)env_close, METH_NOARGS, "Close the environment (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EnvironmentType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hornbeam.state._lmdb.Environment",
    .tp_basicsize = sizeof(EnvironmentObject),
    .tp_dealloc = (destructor)env_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An LMDB environment open in this process (from open()).",
    .tp_methods = env_methods,
};

/* Open the main database of a fresh environment; 0 or an LMDB return code. */
static int
open_main_db(MDB_env *env, MDB_dbi *dbi)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        return rc;
    }
    rc = mdb_dbi_open(txn, NULL, 0, dbi);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static PyObject *
module_open(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path", "map_size", "max_readers", "mode", NULL};
    PyObject *path = NULL;
    PyObject *real_path = NULL;
    Py_ssize_t map_size = 0;
    int max_readers = 126;
    int mode = 0600;
    char resolved[PATH_MAX];
    const char *call = NULL;
    MDB_env *env = NULL;
    MDB_dbi dbi = 0;
    EnvironmentObject *self = NULL;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|$nii:open", keywords,
                                     PyUnicode_FSConverter, &path, &map_size, &max_readers,
                                     &mode)) {
        return NULL;
    }
    if (map_size <= 0 || max_readers <= 0) {
        PyErr_SetString(PyExc_ValueError, "map_size and max_readers must be positive");
        goto fail;
    }
    if (realpath(PyBytes_AS_STRING(path), resolved) == NULL) {
        PyErr_Format(Error, "%s: %s", PyBytes_AS_STRING(path), strerror(errno));
        goto fail;
    }
    real_path = PyBytes_FromString(resolved);
    if (real_path == NULL) {
        goto fail;
    }
    rc = PySet_Contains(open_paths, real_path);
    if (rc != 0) {
        if (rc > 0) {
            PyErr_Format(Error, "%s: the environment is already open in this process",
                         resolved);
        }
        goto fail;
    }
    if ((rc = mdb_env_create(&env))) {
        call = "mdb_env_create";
    }
    else if ((rc = mdb_env_set_maxreaders(env, (unsigned int)max_readers))) {
        call = "mdb_env_set_maxreaders";
    }
    else if ((rc = mdb_env_set_mapsize(env, (size_t)map_size))) {
        call = "mdb_env_set_mapsize";
    }
    else if ((rc = mdb_env_open(env, resolved, MDB_NOTLS | MDB_NOSYNC | MDB_NOMETASYNC,
                                (mdb_mode_t)mode))) {
        call = "mdb_env_open";
    }
    else if ((rc = open_main_db(env, &dbi))) {
        call = "mdb_dbi_open";
    }
    if (rc) {
        PyErr_Format(rc == ENOSPC ? DiskError : Error, "%s: %s: %s", call, resolved,
                     mdb_strerror(rc));
        goto fail;
    }
    self = PyObject_New(EnvironmentObject, &EnvironmentType);
    if (self == NULL) {
        goto fail;
    }
    self->env = env;
    self->dbi = dbi;
    self->spare = NULL;
    self->active = NULL;
    self->generation = 0;
    self->real_path = real_path;
    if (PySet_Add(open_paths, real_path) < 0) {
        self->real_path = NULL;
        Py_DECREF(self); /* closes env */
        Py_DECREF(real_path);
        Py_DECREF(path);
        return NULL;
    }
    Py_DECREF(path);
    return (PyObject *)self;

fail:
    if (env != NULL) {
        mdb_env_close(env);
    }
    Py_XDECREF(real_path);
    Py_XDECREF(path);
    return NULL;
}

static PyObject *
module_version(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    int major, minor, patch;
    mdb_version(&major, &minor, &patch);
    return Py_BuildValue("(iii)", major, minor, patch);
}

static PyMethodDef module_methods[] = {
    {"open", (PyCFunction)(void (*)(void))module_open, METH_VARARGS | METH_KEYWORDS,
     "open(path, *, map_size, max_readers=126, mode=0o600): the environment in directory "
     "path (which must exist)."},
    {"version", module_version, METH_NOARGS, "The LMDB library's (major, minor, patch)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hornbeam.state._lmdb",
    .m_doc = "The LMDB calls of hornbeam's shared state store, made with the GIL held.",
    .m_size = -1,
    .m_methods = module_methods,
};

static int
add_error(PyObject *module, PyObject **slot, const char *name, PyObject *base)
{
    char qualified[64];
    PyOS_snprintf(qualified, sizeof(qualified), "hornbeam.state._lmdb.%s", name);
    *slot = PyErr_NewException(qualified, base, NULL);
    if (*slot == NULL) {
        return -1;
    }
    Py_INCREF(*slot);
    return PyModule_AddObject(module, name, *slot) < 0 ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__lmdb(void)
{
    PyObject *module;

    if (PyType_Ready(&EnvironmentType) < 0 || PyType_Ready(&TransactionType) < 0
        || PyType_Ready(&CursorType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    open_paths = PySet_New(NULL);
    if (open_paths == NULL || add_error(module, &Error, "Error", PyExc_Exception) < 0
        || add_error(module, &MapFullError, "MapFullError", Error) < 0
        || add_error(module, &MapResizedError, "MapResizedError", Error) < 0
        || add_error(module, &DiskError, "DiskError", Error) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
