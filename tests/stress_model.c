/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The randomized model (model.h) as a long stress run:
 *   stress_model [OPS [SEED [CONFIG]]]
 * OPS (default 10,000,000) are shared among the configurations, or all
 * given to CONFIG when named. Exits 1 on any mismatch, error or adapter
 * contract violation, printing the first of each. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MAXCFG 8

int main(int argc, char **argv)
{
  uint64_t ops = argc > 1 ? strtoull(argv[1], NULL, 0) : 10000000;
  uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 1;
  const char *only = argc > 3 ? argv[3] : NULL;
  model_config c[MAXCFG];
  size_t n = model_configs(c, MAXCFG, ops, seed);
  int failed = 0, ran = 0;
  printf("stress_model: %llu ops, seed %llu\n", (unsigned long long)ops,
         (unsigned long long)seed);
  for (size_t i = 0; i < n; i++) {
    if (only && strcmp(only, c[i].name) != 0)
      continue;
    if (only)
      c[i].ops = ops;
    model_result r;
    failed |= model_run(&r, &c[i]);
    model_print(stdout, &c[i], &r);
    fflush(stdout);
    ran++;
  }
  if (!ran) {
    fprintf(stderr, "stress_model: no configuration named %s\n", only);
    return 2;
  }
  return failed ? 1 : 0;
}
