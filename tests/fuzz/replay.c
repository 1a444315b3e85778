/* SPDX-License-Identifier: MIT
 * Replays fuzz corpora without libFuzzer: calls LLVMFuzzerTestOneInput on
 * every regular file of each directory given as an argument and prints TAP,
 * one test per directory with its file count. A harness signals a broken
 * invariant by aborting, so a crash here is a failure prove reports.
 * A missing directory counts as zero files (regression/ starts empty). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole file <path> into a heap block of exactly its size, so a
 * sanitizer build sees any read past the input. Returns NULL on failure. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return NULL;
    }
    *len = (size_t)st.st_size;
    uint8_t *p = malloc(*len ? *len : 1);
    if (p != NULL && fread(p, 1, *len, f) != *len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv)
{
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        unsigned files = 0;
        if (d == NULL) {
            printf("ok %d - %s: no such directory, 0 files\n", i, argv[i]);
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            size_t len;
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            uint8_t *data = slurp(path, &len);
            if (data == NULL)
                continue;
            LLVMFuzzerTestOneInput(data, len);
            free(data);
            files++;
        }
        closedir(d);
        printf("ok %d - %s: %u files\n", i, argv[i], files);
        fflush(stdout);
    }
    printf("1..%d\n", argc - 1);
    return failed;
}
