/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Difference Engine's policy (section 4.1 of the paper), written
 * against the same hooks a custom policy uses. */
#include "config.h"

#include <stddef.h>

#include "core.h"

static dmem_page_state paper_classify(const dmem_page_info *pg, const dmem_policy_env *env,
                                      void *ud)
{
  (void)ud;
  if (pg->bits & DMEM_BIT_MODIFIED)
    return DMEM_C1;
  if (pg->bits & DMEM_BIT_REFERENCED)
    return DMEM_C2;
  return pg->idle_passes >= env->c4_passes ? DMEM_C4 : DMEM_C3;
}

static unsigned paper_techniques(const dmem_page_info *pg, dmem_page_state state,
                                 const dmem_policy_env *env, void *ud)
{
  (void)pg;
  (void)ud;
  switch (state) {
  case DMEM_C2:
    return DMEM_TECH_SHARE | DMEM_TECH_REFERENCE;
  case DMEM_C3:
    return DMEM_TECH_SHARE | DMEM_TECH_PATCH | DMEM_TECH_REFERENCE;
  case DMEM_C4:
    return DMEM_TECH_SHARE | DMEM_TECH_PATCH | DMEM_TECH_COMPRESS | DMEM_TECH_REFERENCE |
           (env->pressure ? DMEM_TECH_SWAP : 0u);
  default:
    return 0;
  }
}

static int paper_victim(const dmem_page_info *pg, const dmem_policy_env *env, void *ud)
{
  (void)ud;
  return env->pressure && pg->idle_passes >= env->c4_passes;
}

static const dmem_policy paper = {
  .version = DMEM_POLICY_VERSION,
  .classify = paper_classify,
  .techniques = paper_techniques,
  .victim = paper_victim,
  .ud = NULL,
};

const dmem_policy *dmem_policy_paper(void)
{
  return &paper;
}

void dmem__policy_resolve(dmem_policy *out, const dmem_policy *given)
{
  *out = given ? *given : paper;
  if (!out->classify)
    out->classify = paper_classify;
  if (!out->techniques)
    out->techniques = paper_techniques;
  if (!out->victim)
    out->victim = paper_victim;
}
