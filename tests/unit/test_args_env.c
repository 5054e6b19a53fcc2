/* Unit tests for the environment layer of common/args (args_env_*): variable
 * names, the merged argv (environment options before the command line's),
 * switches, empty variables, refused switch values, and that getopt_long run
 * over the merged argv lets the command line win over the environment. */
#include <criterion/criterion.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

static const args_env_opt OPTS[] = {{"model", true}, {"kv-mb", true}, {"stream", false}, {"log-level", true}};
#define N_OPTS (sizeof OPTS / sizeof OPTS[0])

static void clear_env(void) {
    unsetenv("HT_MODEL");
    unsetenv("HT_KV_MB");
    unsetenv("HT_STREAM");
    unsetenv("HT_LOG_LEVEL");
}

Test(args_env, names) {
    char b[64];
    cr_assert(args_env_name("HELIUM_WORKER", "kv-mb", b, sizeof b));
    cr_assert_str_eq(b, "HELIUM_WORKER_KV_MB");
    cr_assert(args_env_name("HELIUMCTL", "timeout-ms", b, sizeof b));
    cr_assert_str_eq(b, "HELIUMCTL_TIMEOUT_MS");
    cr_assert_not(args_env_name("HELIUM_WORKER", "kv-mb", b, 19), "19 bytes cannot hold the name and its NUL");
    cr_assert(args_env_name("HELIUM_WORKER", "kv-mb", b, 20));
}

Test(args_env, merge_puts_environment_first) {
    clear_env();
    setenv("HT_MODEL", "/models/m.gguf", 1);
    setenv("HT_STREAM", "true", 1);
    setenv("HT_LOG_LEVEL", "", 1); /* empty: as if unset */
    char *argv[] = {"prog", "serve", "--kv-mb", "64", NULL};
    int ac;
    char **av;
    char err[128];
    cr_assert_eq(args_env_merge("HT", OPTS, N_OPTS, 4, argv, 2, &ac, &av, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ac, 7);
    const char *want[] = {"prog", "serve", "--model", "/models/m.gguf", "--stream", "--kv-mb", "64"};
    for (int i = 0; i < ac; i++) cr_assert_str_eq(av[i], want[i], "argv[%d]", i);
    cr_assert_null(av[ac]);
    args_env_free(&av);
    cr_assert_null(av);
    args_env_free(&av); /* NULL is fine */
    clear_env();
}

Test(args_env, nothing_set_copies_argv) {
    clear_env();
    char *argv[] = {"prog", "--model", "x", NULL};
    int ac;
    char **av;
    char err[128];
    cr_assert_eq(args_env_merge("HT", OPTS, N_OPTS, 3, argv, 1, &ac, &av, err, sizeof err), 0);
    cr_assert_eq(ac, 3);
    for (int i = 0; i < 3; i++) cr_assert_eq(av[i], argv[i]);
    args_env_free(&av);
}

Test(args_env, switch_values) {
    clear_env();
    char *argv[] = {"prog", NULL};
    int ac;
    char **av;
    char err[128];
    setenv("HT_STREAM", "off", 1);
    cr_assert_eq(args_env_merge("HT", OPTS, N_OPTS, 1, argv, 1, &ac, &av, err, sizeof err), 0);
    cr_assert_eq(ac, 1, "a false switch adds nothing");
    args_env_free(&av);
    setenv("HT_STREAM", "maybe", 1);
    err[0] = 0;
    cr_assert_eq(args_env_merge("HT", OPTS, N_OPTS, 1, argv, 1, &ac, &av, err, sizeof err), -1);
    cr_assert_null(av);
    cr_assert(strstr(err, "HT_STREAM='maybe'"), "message names the variable: %s", err);
    clear_env();
}

/* The reason for the order: a getopt_long parser takes the last value. */
Test(args_env, command_line_wins) {
    clear_env();
    setenv("HT_KV_MB", "32", 1);
    setenv("HT_MODEL", "/env.gguf", 1);
    char *argv[] = {"prog", "--kv-mb", "128", NULL};
    int ac;
    char **av;
    char err[128];
    cr_assert_eq(args_env_merge("HT", OPTS, N_OPTS, 3, argv, 1, &ac, &av, err, sizeof err), 0);
    static const struct option lo[] = {{"model", 1, 0, 'm'}, {"kv-mb", 1, 0, 'k'}, {0, 0, 0, 0}};
    const char *model = NULL, *kv = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(ac, av, "", lo, NULL)) != -1) {
        if (c == 'm') model = optarg;
        if (c == 'k') kv = optarg;
    }
    cr_assert_str_eq(model, "/env.gguf");
    cr_assert_str_eq(kv, "128");
    args_env_free(&av);
    clear_env();
}
