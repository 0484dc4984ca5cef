/* hornbeam.state._lmdb: what its two C files share (see _lmdb.c for why the module exists).
 *
 * _lmdb.c owns the module, its errors and environments; _lmdb_txn.c owns transactions and
 * cursors. */
#ifndef HORNBEAM_LMDB_H
#define HORNBEAM_LMDB_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <lmdb.h>

extern PyObject *hb_Error;
extern PyObject *hb_MapFullError;
extern PyObject *hb_MapResizedError;
extern PyObject *hb_DiskError;

/* ---- objects --------------------------------------------------------------------------- */

typedef struct TransactionObject TransactionObject;

typedef struct {
    PyObject_HEAD
    MDB_env *env;              /* NULL once closed */
    MDB_dbi dbi;               /* the main (unnamed) database */
    MDB_txn *spare;            /* a reset read transaction, renewed by the next read */
    TransactionObject *active; /* the one open transaction (borrowed), or NULL */
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
    TransactionObject *trans; /* its txn is NULL once the transaction ended, never reused */
    MDB_cursor *cursor;
    CursorState state;
} CursorObject;

extern PyTypeObject hb_EnvironmentType;
extern PyTypeObject hb_TransactionType;
extern PyTypeObject hb_CursorType;

/* Raise the error for LMDB return code `rc` of `call`; returns NULL. */
PyObject *hb_raise_mdb(const char *call, int rc);

/* End `trans` (commit or abort); the return code of a write commit, else 0. */
int hb_trans_end(TransactionObject *trans, int commit);

#endif
