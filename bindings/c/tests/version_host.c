/* bindings/c/tests/version_host.c: a minimal C host built only through
 * pkg-config against a staged prefix (bindings/c/stage.sh). Prints the
 * library version and checks it against the header it was compiled with,
 * then creates, describes and frees a context. Exit 0 on success. */
#include <stdio.h>
#include <string.h>

#include <mailoauth.h>

int main(void)
{
    const char *v = mailoauth_version();
    printf("mailoauth %s (ABI %u)\n", v ? v : "(null)", (unsigned)mailoauth_abi_version());
    if (v == NULL || strcmp(v, MAILOAUTH_VERSION) != 0) {
        fprintf(stderr, "version %s differs from the header's %s\n", v ? v : "(null)", MAILOAUTH_VERSION);
        return 1;
    }
    if (mailoauth_abi_version() < MAILOAUTH_ABI_VERSION) {
        fprintf(stderr, "ABI %u is older than the header's %u\n", (unsigned)mailoauth_abi_version(),
                (unsigned)MAILOAUTH_ABI_VERSION);
        return 1;
    }
    mailoauth_context *ctx = NULL;
    const char *cfg = "{\"client_id\":\"00000000-0000-0000-0000-000000000000\","
                      "\"cache\":{\"protection\":\"none\",\"path\":\"/nonexistent/mailoauth\"}}";
    if (mailoauth_context_new(cfg, MAILOAUTH_ABI_VERSION, &ctx) != MAILOAUTH_OK) {
        char msg[512];
        mailoauth_last_error_message(msg, (int32_t)sizeof msg);
        fprintf(stderr, "context_new: %s\n", msg);
        return 1;
    }
    char *json = NULL;
    int ok = mailoauth_context_describe(ctx, &json) == MAILOAUTH_OK && json != NULL && strstr(json, "\"version\"") != NULL;
    mailoauth_string_free(json);
    mailoauth_context_free(ctx);
    if (!ok) {
        fprintf(stderr, "context_describe failed\n");
        return 1;
    }
    return 0;
}
