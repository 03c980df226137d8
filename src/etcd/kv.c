/*
 * etcd's verbs: the requests that are etcd operations, with no decision of
 * the lock protocol in them. A transaction's pieces (comparisons on a key's
 * create or mod revision or on an empty range, put and delete operations),
 * an answer's header revision, and step M's conditional put, which the
 * background thread (session.c) runs for lock.c's grants. Calls only
 * wire.c (see etcd_internal.h).
 */
#include "etcd_internal.h"

#include <errno.h>

json_object *fifolock__etcd_compare_create(const char *key, int64_t rev)
{
    json_object *c = json_object_new_object(), *list = json_object_new_array();

    json_object_object_add(c, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(c, "target", json_object_new_string("CREATE"));
    json_object_object_add(c, "result", json_object_new_string("EQUAL"));
    json_object_object_add(c, "create_revision", fifolock__etcd_i64(rev));
    json_object_array_add(list, c);
    return list;
}

json_object *fifolock__etcd_put_op(int64_t lease, const char *key, const char *value)
{
    json_object *op = json_object_new_object(), *put = json_object_new_object();

    json_object_object_add(put, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(put, "value", fifolock__etcd_str_b64(value));
    json_object_object_add(put, "lease", fifolock__etcd_i64(lease));
    json_object_object_add(op, "request_put", put);
    return op;
}

int64_t fifolock__etcd_header_revision(json_object *obj)
{
    json_object *header;

    return json_object_object_get_ex(obj, "header", &header)
               ? fifolock__etcd_get_i64(header, "revision")
               : 0;
}

json_object *fifolock__etcd_delete_op(const char *key)
{
    json_object *op = json_object_new_object(), *del = json_object_new_object();

    json_object_object_add(del, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(op, "request_delete_range", del);
    return op;
}

json_object *fifolock__etcd_compare_range_empty(const char *key, const char *range_end)
{
    json_object *c = json_object_new_object();

    json_object_object_add(c, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(c, "range_end", fifolock__etcd_str_b64(range_end));
    json_object_object_add(c, "target", json_object_new_string("CREATE"));
    json_object_object_add(c, "result", json_object_new_string("EQUAL"));
    json_object_object_add(c, "create_revision", fifolock__etcd_i64(0));
    return c;
}

/* Adds "create_revision(key) == rev" to a list of comparisons. */
void fifolock__etcd_cmp_add_create(json_object *cmp, const char *key, int64_t rev)
{
    json_object *one = fifolock__etcd_compare_create(key, rev);

    json_object_array_add(cmp, json_object_get(json_object_array_get_idx(one, 0)));
    json_object_put(one);
}

/* Adds "mod_revision(key) == rev" to a list of comparisons. */
void fifolock__etcd_cmp_add_mod(json_object *cmp, const char *key, int64_t rev)
{
    json_object *c = json_object_new_object();

    json_object_object_add(c, "key", fifolock__etcd_str_b64(key));
    json_object_object_add(c, "target", json_object_new_string("MOD"));
    json_object_object_add(c, "result", json_object_new_string("EQUAL"));
    json_object_object_add(c, "mod_revision", fifolock__etcd_i64(rev));
    json_object_array_add(cmp, c);
}

int fifolock__etcd_mark(fifolock_etcd *s, const char *key, int64_t token, int64_t lease,
                        const char *value, int64_t until_ms)
{
    json_object *txn = json_object_new_object(), *success = json_object_new_array(), *resp = NULL,
                *succeeded;
    int rc;

    if (txn == NULL || success == NULL) {
        json_object_put(txn);
        json_object_put(success);
        return ENOMEM;
    }
    json_object_object_add(txn, "compare", fifolock__etcd_compare_create(key, token));
    json_object_array_add(success, fifolock__etcd_put_op(lease, key, value));
    json_object_object_add(txn, "success", success);
    rc = fifolock__etcd_call(s, "/v3/kv/txn", txn, &resp, until_ms);
    json_object_put(txn);
    if (rc == ENOENT)
        rc = EIO;
    if (rc != 0)
        return rc;
    rc = json_object_object_get_ex(resp, "succeeded", &succeeded) &&
                 json_object_get_boolean(succeeded)
             ? 0
             : ENOLCK;
    json_object_put(resp);
    return rc;
}
