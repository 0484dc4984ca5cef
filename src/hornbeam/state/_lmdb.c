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
 * store's calls come from whichever app thread runs them), without syncs, and with
 * MDB_WRITEMAP when asked (tmpfs, and the map's file kept allocated; see LmdbStore). One spare read transaction is kept reset and renewed for the next read.
 */
#include "_lmdb.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

PyObject *hb_Error;
PyObject *hb_MapFullError;
PyObject *hb_MapResizedError;
PyObject *hb_DiskError;
static PyObject *open_paths; /* set of bytes: the real paths of the environments open here */

PyObject *
hb_raise_mdb(const char *call, int rc)
{
    PyObject *type = hb_Error;
    if (rc == MDB_MAP_FULL) {
        type = hb_MapFullError;
    }
    else if (rc == MDB_MAP_RESIZED) {
        type = hb_MapResizedError;
    }
    else if (rc == ENOSPC) {
        type = hb_DiskError;
    }
    PyErr_Format(type, "%s: %s", call, mdb_strerror(rc));
    return NULL;
}


/* ---- environments ---------------------------------------------------------------------- */

static int
env_check(EnvironmentObject *self)
{
    if (self->env == NULL) {
        PyErr_SetString(hb_Error, "the environment is closed");
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
        PyErr_SetString(hb_Error, "a transaction is open on this environment: end it first");
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
            return hb_raise_mdb("mdb_txn_begin", rc);
        }
    }
    trans = PyObject_New(TransactionObject, &hb_TransactionType);
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
        return hb_raise_mdb("mdb_env_set_mapsize", rc);
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
        return hb_raise_mdb("mdb_env_info", rc);
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
        return hb_raise_mdb("mdb_reader_check", rc);
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
        return hb_raise_mdb("mdb_env_sync", rc);
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
        hb_trans_end(self->active, 0);
    }
    env_drop_spare(self);
    mdb_env_close(self->env);
    self->env = NULL;
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

PyTypeObject hb_EnvironmentType = {
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
    static char *keywords[] = {"path", "map_size", "max_readers", "mode", "writemap", NULL};
    PyObject *path = NULL;
    PyObject *real_path = NULL;
    Py_ssize_t map_size = 0;
    int max_readers = 126;
    int mode = 0600;
    int writemap = 0;
    char resolved[PATH_MAX];
    const char *call = NULL;
    MDB_env *env = NULL;
    MDB_dbi dbi = 0;
    EnvironmentObject *self = NULL;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|$niip:open", keywords,
                                     PyUnicode_FSConverter, &path, &map_size, &max_readers,
                                     &mode, &writemap)) {
        return NULL;
    }
    if (map_size <= 0 || max_readers <= 0) {
        PyErr_SetString(PyExc_ValueError, "map_size and max_readers must be positive");
        goto fail;
    }
    if (realpath(PyBytes_AS_STRING(path), resolved) == NULL) {
        PyErr_Format(hb_Error, "%s: %s", PyBytes_AS_STRING(path), strerror(errno));
        goto fail;
    }
    real_path = PyBytes_FromString(resolved);
    if (real_path == NULL) {
        goto fail;
    }
    rc = PySet_Contains(open_paths, real_path);
    if (rc != 0) {
        if (rc > 0) {
            PyErr_Format(hb_Error, "%s: the environment is already open in this process",
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
    else if ((rc = mdb_env_open(env, resolved,
                                MDB_NOTLS | MDB_NOSYNC | MDB_NOMETASYNC |
                                    (writemap ? MDB_WRITEMAP : 0),
                                (mdb_mode_t)mode))) {
        call = "mdb_env_open";
    }
    else if ((rc = open_main_db(env, &dbi))) {
        call = "mdb_dbi_open";
    }
    if (rc) {
        PyErr_Format(rc == ENOSPC ? hb_DiskError : hb_Error, "%s: %s: %s", call, resolved,
                     mdb_strerror(rc));
        goto fail;
    }
    self = PyObject_New(EnvironmentObject, &hb_EnvironmentType);
    if (self == NULL) {
        goto fail;
    }
    self->env = env;
    self->dbi = dbi;
    self->spare = NULL;
    self->active = NULL;
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
     "open(path, *, map_size, max_readers=126, mode=0o600, writemap=False): the environment "
     "in directory path (which must exist); with writemap, writes go straight into a "
     "writable map."},
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

    if (PyType_Ready(&hb_EnvironmentType) < 0 || PyType_Ready(&hb_TransactionType) < 0
        || PyType_Ready(&hb_CursorType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    open_paths = PySet_New(NULL);
    if (open_paths == NULL || add_error(module, &hb_Error, "Error", PyExc_Exception) < 0
        || add_error(module, &hb_MapFullError, "MapFullError", hb_Error) < 0
        || add_error(module, &hb_MapResizedError, "MapResizedError", hb_Error) < 0
        || add_error(module, &hb_DiskError, "DiskError", hb_Error) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
