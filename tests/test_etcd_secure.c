/*
 * Only those who belong get in: the etcd lock against a real etcd that
 * speaks TLS and checks client certificates (certificates made by openssl
 * at test time), and one with user/password auth enabled. A client without
 * the right certificate or password is refused with a clear error, within
 * its timeout, and leaves nothing behind (no key, no lease). Each cause has
 * its own code: a server not trusted (wrong or missing CA) ENOKEY, a client
 * refused EACCES, a wrong scheme (https:// to plain HTTP, http:// to TLS)
 * EPROTO, a wrong password EKEYREJECTED, a user for an etcd without auth
 * ENOTSUP.
 * Skips (77) only when etcd is not installed.
 */
#include "check.h"
#include "etcd/harness.h"

static struct etcd_server tls, auth;
static struct etcd_server auth_ttl; /* auth tokens that expire after 1 s */
static char root_token[512];

static int open_with(fifolock_etcd **s, const char *endpoints, struct fifolock_etcd_options *o)
{
    o->timeout_ms = 5000; /* a refusal must come at once, not at the timeout */
    *s = NULL;
    return fifolock_etcd_open(s, endpoints, o);
}

static void round_trip(fifolock_etcd *s, const char *name)
{
    int64_t t = 0;

    CHECK_EQ(fifolock_etcd_acquire(s, name, &fifolock_mutex, NULL, &t), 0);
    CHECK_LT(0, t);
    CHECK_EQ(fifolock_etcd_release(s, name, t), 0);
}

static void tls_with_the_cluster_ca_and_a_client_certificate_works(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s;

    o.cacert = etcd_file(&tls, "tls/ca.pem");
    o.cert = etcd_file(&tls, "tls/client.pem");
    o.key = etcd_file(&tls, "tls/client-key.pem");
    CHECK_EQ(open_with(&s, tls.endpoints, &o), 0);
    if (s == NULL)
        return;
    round_trip(s, "tls");
    CHECK_EQ(fifolock_etcd_close(s), 0);
}

/*
 * A client that cannot get in: `expected` (its own code for each cause, so
 * that a program or a person can tell them apart), with a message, in time,
 * nothing left behind on the cluster `on` (given to open as `endpoints`).
 */
static void refused_by(struct etcd_server *on, const char *endpoints,
                       struct fifolock_etcd_options *o, int expected, const char *what)
{
    fifolock_etcd *s;
    const char *token = on == &tls ? NULL : root_token;
    long before = etcd_lease_count(on->url[0], token), t0 = etcd_now_ms();
    int rc = open_with(&s, endpoints, o);

    CHECK_EQ(rc, expected);
    CHECK_LE(etcd_now_ms() - t0, 2500);
    CHECK_TRUE(fifolock_etcd_last_error()[0] != '\0');
    printf("%s: %s: %s\n", what, fifolock_etcd_strerror(rc), fifolock_etcd_last_error());
    if (rc != expected)
        fprintf(stderr, "%s: %s (%s)\n", what, fifolock_etcd_strerror(rc), fifolock_etcd_last_error());
    CHECK_TRUE(s == NULL);
    CHECK_EQ(etcd_lease_count(on->url[0], token), before);
    CHECK_EQ(etcd_count(on->url[0], "fifolock/", token), 0);
}

static void refused(struct fifolock_etcd_options *o, const char *what)
{
    refused_by(&tls, tls.endpoints, o, EACCES, what);
}

/* The same host and port, with the other scheme. */
static const char *other_scheme(const struct etcd_server *e)
{
    static char url[200];
    const char *u = e->url[0];

    if (strncmp(u, "https://", 8) == 0)
        snprintf(url, sizeof url, "http://%s", u + 8);
    else
        snprintf(url, sizeof url, "https://%s", u + 7);
    return url;
}

static void tls_without_a_client_certificate_is_refused(void)
{
    struct fifolock_etcd_options o = { 0 };

    o.cacert = etcd_file(&tls, "tls/ca.pem");
    refused(&o, "no client certificate");
}

static void tls_with_a_client_certificate_of_another_ca_is_refused(void)
{
    struct fifolock_etcd_options o = { 0 };

    o.cacert = etcd_file(&tls, "tls/ca.pem");
    o.cert = etcd_file(&tls, "tls/other-client.pem");
    o.key = etcd_file(&tls, "tls/other-client-key.pem");
    refused(&o, "client certificate of another CA");
}

static void tls_with_the_wrong_ca_does_not_trust_the_server(void)
{
    struct fifolock_etcd_options o = { 0 };

    o.cacert = etcd_file(&tls, "tls/other-ca.pem");
    o.cert = etcd_file(&tls, "tls/client.pem");
    o.key = etcd_file(&tls, "tls/client-key.pem");
    refused_by(&tls, tls.endpoints, &o, ENOKEY, "wrong CA");
    CHECK_TRUE(strstr(fifolock_etcd_last_error(), "not trusted") != NULL);
    CHECK_TRUE(strstr(fifolock_etcd_strerror(ENOKEY), "CA certificate") != NULL);
}

static void tls_without_a_ca_does_not_trust_the_server(void)
{
    struct fifolock_etcd_options o = { 0 };

    o.cert = etcd_file(&tls, "tls/client.pem");
    o.key = etcd_file(&tls, "tls/client-key.pem");
    refused_by(&tls, tls.endpoints, &o, ENOKEY, "no CA");
    CHECK_TRUE(strstr(fifolock_etcd_last_error(), "no CA certificate given") != NULL);
}

static void https_to_a_plain_http_etcd_is_a_wrong_scheme(void)
{
    struct fifolock_etcd_options o = { 0 };

    o.cacert = etcd_file(&tls, "tls/ca.pem");
    refused_by(&auth, other_scheme(&auth), &o, EPROTO, "https:// to plain HTTP");
    CHECK_TRUE(strstr(fifolock_etcd_last_error(), "speaks plain HTTP") != NULL);
}

static void http_to_a_tls_etcd_is_a_wrong_scheme(void)
{
    struct fifolock_etcd_options o = { 0 };

    o.cacert = etcd_file(&tls, "tls/ca.pem");
    o.cert = etcd_file(&tls, "tls/client.pem");
    o.key = etcd_file(&tls, "tls/client-key.pem");
    refused_by(&tls, other_scheme(&tls), &o, EPROTO, "http:// to TLS");
    CHECK_TRUE(strstr(fifolock_etcd_last_error(), "speaks TLS") != NULL);
}

static void a_user_for_an_etcd_without_auth_is_a_clear_error(void)
{
    struct fifolock_etcd_options o = { 0 };

    o.cacert = etcd_file(&tls, "tls/ca.pem");
    o.cert = etcd_file(&tls, "tls/client.pem");
    o.key = etcd_file(&tls, "tls/client-key.pem");
    o.user = "alice";
    o.password = "alicepw";
    refused_by(&tls, tls.endpoints, &o, ENOTSUP, "--user without auth");
    CHECK_TRUE(strstr(fifolock_etcd_last_error(), "authentication is not enabled") != NULL);
}

static void auth_with_the_right_password_works(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s;

    o.user = "alice";
    o.password = "alicepw";
    CHECK_EQ(open_with(&s, auth.endpoints, &o), 0);
    if (s == NULL)
        return;
    round_trip(s, "auth");
    CHECK_EQ(fifolock_etcd_close(s), 0);
    CHECK_EQ(etcd_lease_count(auth.url[0], root_token), 0);
}

static void auth_with_a_wrong_password_is_refused_clearly(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s;
    long t0 = etcd_now_ms();

    o.user = "alice";
    o.password = "wrong";
    CHECK_EQ(open_with(&s, auth.endpoints, &o), EKEYREJECTED);
    CHECK_LE(etcd_now_ms() - t0, 2500);
    CHECK_TRUE(strstr(fifolock_etcd_last_error(), "authentication failed") != NULL);
    printf("wrong password: %s\n", fifolock_etcd_last_error());
    CHECK_TRUE(s == NULL);
    CHECK_EQ(etcd_lease_count(auth.url[0], root_token), 0);
}

/* No user, or one without permission: refused at open or at the first acquire. */
static void auth_refused(const char *user, const char *password)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s;
    int64_t t;
    int rc;

    o.user = user;
    o.password = password;
    rc = open_with(&s, auth.endpoints, &o);
    if (rc == 0) {
        struct timespec d = etcd_in_ms(2000);

        rc = fifolock_etcd_acquire(s, "auth", &fifolock_mutex, &d, &t);
        CHECK_TRUE(fifolock_etcd_last_error()[0] != '\0');
        fifolock_etcd_close(s);
    }
    CHECK_EQ(rc, EACCES);
    CHECK_EQ(etcd_count(auth.url[0], "fifolock/", root_token), 0);
    CHECK_EQ(etcd_lease_count(auth.url[0], root_token), 0);
}

static void auth_without_a_user_is_refused(void)
{
    auth_refused(NULL, NULL);
}

static void auth_of_a_user_without_permission_is_refused(void)
{
    auth_refused("bob", "bobpw");
}

static void an_expired_auth_token_is_renewed_and_the_hold_survives(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s;
    int64_t t, t2;
    int lost = 0;

    o.user = "alice";
    o.password = "alicepw";
    o.ttl = 2;
    CHECK_EQ(open_with(&s, auth_ttl.endpoints, &o), 0);
    if (s == NULL)
        return;
    CHECK_EQ(fifolock_etcd_acquire(s, "expiring", &fifolock_mutex, NULL, &t), 0);
    /* Tokens expire after 1 s; the lease (2 s) must be kept alive past that. */
    etcd_sleep_ms(3000);
    lost = fifolock_etcd_check(s, "expiring", t, NULL);
    CHECK_EQ(lost, 0);
    if (lost)
        fprintf(stderr, "check: %s (%s)\n", fifolock_etcd_strerror(lost), fifolock_etcd_last_error());
    CHECK_EQ(fifolock_etcd_release(s, "expiring", t), 0);
    CHECK_EQ(fifolock_etcd_acquire(s, "expiring", &fifolock_mutex, NULL, &t2), 0);
    CHECK_EQ(fifolock_etcd_release(s, "expiring", t2), 0);
    CHECK_EQ(fifolock_etcd_close(s), 0);
}

int main(int argc, char **argv)
{
    static const struct check_test tests[] = {
        TEST(tls_with_the_cluster_ca_and_a_client_certificate_works),
        TEST(tls_without_a_client_certificate_is_refused),
        TEST(tls_with_a_client_certificate_of_another_ca_is_refused),
        TEST(tls_with_the_wrong_ca_does_not_trust_the_server),
        TEST(tls_without_a_ca_does_not_trust_the_server),
        TEST(https_to_a_plain_http_etcd_is_a_wrong_scheme),
        TEST(http_to_a_tls_etcd_is_a_wrong_scheme),
        TEST(a_user_for_an_etcd_without_auth_is_a_clear_error),
        TEST(auth_with_the_right_password_works),
        TEST(auth_with_a_wrong_password_is_refused_clearly),
        TEST(auth_without_a_user_is_refused),
        TEST(auth_of_a_user_without_permission_is_refused),
        TEST(an_expired_auth_token_is_renewed_and_the_hold_survives),
    };
    int status;

    if (etcd_up(&tls, 1, "--tls") == ETCD_SKIP) {
        printf("etcd is not installed: skipped\n");
        return ETCD_SKIP;
    }
    etcd_up(&auth, 1, "--auth");
    etcd_up(&auth_ttl, 1, "--auth --auth-token-ttl 1");
    {
        static char ca[400], cert[400], key[400]; /* etcd_file() reuses its buffers */
        snprintf(ca, sizeof ca, "%s", etcd_file(&tls, "tls/ca.pem"));
        snprintf(cert, sizeof cert, "%s", etcd_file(&tls, "tls/client.pem"));
        snprintf(key, sizeof key, "%s", etcd_file(&tls, "tls/client-key.pem"));
        etcd_raw_cacert = ca;
        etcd_raw_cert = cert;
        etcd_raw_key = key;
    }
    etcd_login(auth.url[0], "root", "rootpw", root_token, sizeof root_token);
    CHECK_TRUE(root_token[0] != '\0');
    status = etcd_run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
    etcd_down(&tls);
    etcd_down(&auth);
    etcd_down(&auth_ttl);
    return status;
}
