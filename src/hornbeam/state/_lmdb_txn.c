/* hornbeam.state._lmdb: transactions and their cursors, every call made with the GIL held.
 *
 * A transaction is checked on every call, and a cursor through its transaction: using
 * either after the transaction ended raises Error; nothing here touches memory LMDB has
 * freed. A Transaction object is never reused: each begin() makes a new one. */
#include "_lmdb.h"

/* ---- transactions ---------------------------------------------------------------------- */

int
hb_trans_end(TransactionObject *trans, int commit)
{
    EnvironmentObject *env = trans->env;
    MDB_txn *txn = trans->txn;
    int rc = 0;

    trans->txn = NULL;
    env->active = NULL;
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
        PyErr_SetString(hb_Error, "the transaction has ended");
        return -1;
    }
    return 0;
}

/* View `obj` (bytes, or any buffer) as an MDB_val; `view` is released after the LMDB call.
 * -1 with an error set when `obj` is not a buffer. */
static int
as_val(PyObject *obj, Py_buffer *view, MDB_val *val)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    val->mv_size = (size_t)view->len;
    val->mv_data = view->buf;
    return 0;
}

static PyObject *
trans_get(TransactionObject *self, PyObject *arg)
{
    Py_buffer key;
    MDB_val k, v;
    int rc;

    if (trans_check(self) < 0 || as_val(arg, &key, &k) < 0) {
        return NULL;
    }
    rc = mdb_get(self->txn, self->env->dbi, &k, &v);
    PyBuffer_Release(&key);
    if (rc == MDB_NOTFOUND) {
        Py_RETURN_NONE;
    }
    if (rc) {
        return hb_raise_mdb("mdb_get", rc);
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
    if (trans_check(self) < 0 || as_val(args[0], &key, &k) < 0) {
        return NULL;
    }
    if (as_val(args[1], &value, &v) < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    rc = mdb_put(self->txn, self->env->dbi, &k, &v, 0);
    PyBuffer_Release(&key);
    PyBuffer_Release(&value);
    if (rc) {
        return hb_raise_mdb("mdb_put", rc);
    }
    Py_RETURN_TRUE;
}

static PyObject *
trans_delete(TransactionObject *self, PyObject *arg)
{
    Py_buffer key;
    MDB_val k;
    int rc;

    if (trans_check(self) < 0 || as_val(arg, &key, &k) < 0) {
        return NULL;
    }
    rc = mdb_del(self->txn, self->env->dbi, &k, NULL);
    PyBuffer_Release(&key);
    if (rc == MDB_NOTFOUND) {
        Py_RETURN_FALSE;
    }
    if (rc) {
        return hb_raise_mdb("mdb_del", rc);
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
    rc = hb_trans_end(self, 1);
    if (rc) {
        return hb_raise_mdb("mdb_txn_commit", rc);
    }
    Py_RETURN_NONE;
}

static PyObject *
trans_abort(TransactionObject *self, PyObject *Py_UNUSED(ignored))
{
    /* A no-op on an ended transaction: a failed commit has already freed it. */
    if (self->txn != NULL) {
        hb_trans_end(self, 0);
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
        return hb_raise_mdb("mdb_cursor_open", rc);
    }
    cursor = PyObject_New(CursorObject, &hb_CursorType);
    if (cursor == NULL) {
        mdb_cursor_close(mc);
        return NULL;
    }
    Py_INCREF(self);
    cursor->trans = self;
    cursor->cursor = mc;
    cursor->state = UNPOSITIONED;
    return (PyObject *)cursor;
}

static void
trans_dealloc(TransactionObject *self)
{
    if (self->txn != NULL) {
        hb_trans_end(self, 0);
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

PyTypeObject hb_TransactionType = {
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
    if (self->trans->txn == NULL) {
        PyErr_SetString(hb_Error, "the cursor's transaction has ended");
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
        hb_raise_mdb("mdb_cursor_get", rc);
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

    if (as_val(arg, &key, &k) < 0) {
        return NULL;
    }
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
    if (!self->trans->write || self->trans->txn != NULL) {
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

PyTypeObject hb_CursorType = {
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
