# Two entry points a person needs: `make run` (set up + whole pipeline) and `make test`
# (set up + lint + types + tests). Everything else is a building block of those two.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dvc.yaml stage commands call `python -m pipeline ...`: the venv must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup run test test-fast test-act lint typecheck unit e2e workflow-lint bench clean

# The venv is rebuilt only when the lock file or the package metadata changes. uv installs the
# locked, hash-checked set in seconds where pip takes about a minute (CI installs it in every
# job); uv itself comes from the same lock, its hashes checked by pip.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	awk '/^uv==/ {p = 1} p {print} p && !/\\$$/ {exit}' requirements.lock > $(VENV)/uv-requirement.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(VENV)/uv-requirement.txt
	$(BIN)/uv pip install --quiet --require-hashes --python $(BIN)/python -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . || \
	  $(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/dvc repro

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

workflow-lint: setup
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline --persona auditor .github/workflows

unit: setup
	$(BIN)/pytest tests/unit

# The slow half (CI: nightly and on demand): real dvc, git, S3 server, and the workflows under act.
e2e: setup
	$(BIN)/pytest tests/e2e

# The workflows alone under a real Actions runner (act, host mode) against a GitHub stand-in.
test-act: setup
	$(BIN)/pytest -m act

# The fast half (CI: every PR and push): minutes, no end-to-end test.
test-fast: lint typecheck workflow-lint unit

# Everything: what `.ci/run` runs.
test: lint typecheck workflow-lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/pipeline_scale.py

# Switch the default DVC remote `storage` from the local placeholder to real storage:
#   make remote DVC_REMOTE_URL=s3://bucket/path [AWS_ENDPOINT_URL=https://...] [LOCAL=1]
# (gs://... and azure://... work too once dvc-gs / dvc-azure are installed). LOCAL=1 writes the
# git-ignored .dvc/config.local instead of .dvc/config: what CI does, so its checkout stays
# clean. Credentials never go in either file; they come from the environment.
.PHONY: remote
remote: setup
	@if [[ -z "$${DVC_REMOTE_URL:-}" ]]; then \
	  echo "usage: make remote DVC_REMOTE_URL=s3://bucket/path [AWS_ENDPOINT_URL=url] [LOCAL=1]" >&2; \
	  exit 2; \
	fi
	$(BIN)/dvc remote add $(if $(LOCAL),--local) --default --force storage "$$DVC_REMOTE_URL"
	$(BIN)/dvc remote modify $(if $(LOCAL),--local) storage verify true
	@if [[ -n "$${AWS_ENDPOINT_URL:-}" ]]; then \
	  set -x; $(BIN)/dvc remote modify $(if $(LOCAL),--local) storage endpointurl "$$AWS_ENDPOINT_URL"; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# ---------------------------------------------------------------- pull-request CI (pr.yml)
# Building blocks of .github/workflows/pr.yml, so the workflow stays thin and the logic runs
# the same on a laptop. Outputs land in $(PR_DIR): report.md, report.json, verdict.json,
# pr-number, head-sha (the `pr-report` artifact pr-comment.yml posts).
PR_DIR ?= pr-report
# The venv first on PATH: dvc.yaml's stage commands call `python -m pipeline ...`.
VENV_PATH = PATH="$(abspath $(BIN)):$$PATH"
BOT_NAME ?= github-actions[bot]
BOT_EMAIL ?= 41898282+github-actions[bot]@users.noreply.github.com
.PHONY: pr-scope pr-pull pr-pipeline pr-policy pr-report pr-meta pr-gate pr-guard pr-push pr-commit

# Restore data, model and run-cache from the DVC remote, only when CI has one configured
# (repository variable DVC_REMOTE_URL); otherwise say so and let the pipeline run from scratch.
pr-pull: setup
	@if [[ -z "$${DVC_REMOTE_URL:-}" ]]; then \
	  echo "::notice title=DVC remote::DVC_REMOTE_URL is not configured: not pulling; the pipeline runs from scratch"; \
	  exit 0; \
	fi; \
	$(MAKE) --no-print-directory remote LOCAL=1; \
	$(VENV_PATH) $(BIN)/dvc pull --run-cache --allow-missing \
	  || echo "::warning title=DVC remote::dvc pull failed; the pipeline runs from scratch"

# Our parser first (no YAML aliases, bounded size, schemas): a hostile params.yaml is refused
# in a second instead of keeping DVC's parser busy for minutes.
pr-pipeline: setup
	$(BIN)/python -m pipeline config-check
	$(VENV_PATH) $(BIN)/dvc repro

# Exit 1 when the policy says no; verdict.json is written either way.
pr-policy: setup
	@mkdir -p $(PR_DIR)
	$(BIN)/python -m pipeline policy check --stage staging --format json --output $(PR_DIR)/verdict.json

pr-report: setup
	@mkdir -p $(PR_DIR)
	$(VENV_PATH) $(BIN)/python -m pipeline report --target "$${TARGET_BRANCH:-main}" \
	  $(if $(wildcard $(PR_DIR)/verdict.json),--policy $(PR_DIR)/verdict.json) --output $(PR_DIR)/report.md
	$(VENV_PATH) $(BIN)/python -m pipeline report --target "$${TARGET_BRANCH:-main}" --format json \
	  $(if $(wildcard $(PR_DIR)/verdict.json),--policy $(PR_DIR)/verdict.json) --output $(PR_DIR)/report.json
	@if [[ -n "$${GITHUB_STEP_SUMMARY:-}" ]]; then cat $(PR_DIR)/report.md >> "$$GITHUB_STEP_SUMMARY"; fi

# The required check, after the report is uploaded: fails when the policy failed (or was not
# evaluated) or when the committed dvc.lock is not the one the pipeline produces.
pr-gate: setup
	$(BIN)/python -m pipeline gate $(PR_DIR)/report.json \
	  $${GITHUB_STEP_SUMMARY:+--markdown "$$GITHUB_STEP_SUMMARY"}

# Which checks a PR needs, from what its merge commit changes against the base (HEAD^1):
# registry=true when it edits models/registry.yaml, pipeline=true when it changes anything else.
# Written to $GITHUB_OUTPUT. The workflows skip a job by `if:` on these, never by a `paths`
# filter: a skipped job counts as passed for a required check, a filtered-out workflow leaves
# the check pending forever and blocks the merge.
pr-scope:
	@files="$$(git diff --name-only HEAD^1 HEAD)" || { echo "cannot diff HEAD^1..HEAD" >&2; exit 2; }; \
	registry=false; pipeline=false; \
	while IFS= read -r file; do \
	  if [[ "$$file" == "models/registry.yaml" ]]; then registry=true; \
	  elif [[ -n "$$file" ]]; then pipeline=true; fi; \
	done <<<"$$files"; \
	printf 'registry=%s\npipeline=%s\n' "$$registry" "$$pipeline" | tee -a "$${GITHUB_OUTPUT:-/dev/null}"

# The PR number and head SHA travel with the report; pr-comment.yml re-checks both.
pr-meta:
	@[[ "$${PR_NUMBER:-}" =~ ^[0-9]+$$ ]] || { echo "PR_NUMBER must be digits" >&2; exit 2; }
	@[[ "$${HEAD_SHA:-}" =~ ^[0-9a-f]{40}$$ ]] || { echo "HEAD_SHA must be 40 hex" >&2; exit 2; }
	@mkdir -p $(PR_DIR)
	printf '%s\n' "$$PR_NUMBER" > $(PR_DIR)/pr-number
	printf '%s\n' "$$HEAD_SHA" > $(PR_DIR)/head-sha

# Write-back guard: skip=true when no WRITEBACK_TOKEN is configured (WRITEBACK_ENABLED != true:
# a push with the default token would start no CI on the new head), when the checked-out head is
# the bot's own commit (no loops) or when the branch moved on since the event (a newer run will
# handle it). Writes to $GITHUB_OUTPUT.
pr-guard:
	@author="$$(git log -1 --format=%an HEAD)"; head="$$(git rev-parse HEAD)"; skip=false; \
	if [[ "$${WRITEBACK_ENABLED:-}" != "true" ]]; then \
	  echo "::notice title=Write-back::off (no WRITEBACK_TOKEN secret): commit dvc.lock yourself, see the README"; skip=true; \
	elif [[ "$$author" == "$(BOT_NAME)" ]]; then \
	  echo "::notice title=Write-back::head commit is by $(BOT_NAME): nothing to write back"; skip=true; \
	elif [[ -n "$${HEAD_SHA:-}" && "$$head" != "$$HEAD_SHA" ]]; then \
	  echo "::notice title=Write-back::branch moved to $$head since $$HEAD_SHA: skipping"; skip=true; \
	fi; \
	echo "skip=$$skip" >> "$${GITHUB_OUTPUT:-/dev/stdout}"

pr-push: setup
	@if [[ -z "$${DVC_REMOTE_URL:-}" ]]; then \
	  echo "::notice title=DVC remote::DVC_REMOTE_URL is not configured: outputs and run-cache not pushed"; \
	  exit 0; \
	fi; \
	$(MAKE) --no-print-directory remote LOCAL=1; \
	$(VENV_PATH) $(BIN)/dvc push --run-cache

# Commit dvc.lock and the git-tracked outputs to the PR branch (HEAD_REF) and push them with
# PUSH_TOKEN (given as an HTTP header for this one command; never stored in .git/config).
pr-commit:
	@[[ -n "$${HEAD_REF:-}" ]] && git check-ref-format --branch "$$HEAD_REF" >/dev/null \
	  || { echo "HEAD_REF must be a branch name" >&2; exit 2; }
	git add -A -- dvc.lock models ':(glob)**/.gitignore'
	@if git diff --cached --quiet; then \
	  echo "::notice title=Write-back::dvc.lock and metrics are already up to date"; exit 0; \
	fi; \
	git -c user.name="$(BOT_NAME)" -c user.email="$(BOT_EMAIL)" commit -q \
	  -m "Update dvc.lock and metrics (CI write-back)"; \
	auth=(); \
	if [[ -n "$${PUSH_TOKEN:-}" ]]; then \
	  basic="$$(printf 'x-access-token:%s' "$$PUSH_TOKEN" | base64 -w0)"; \
	  echo "::add-mask::$$basic"; \
	  auth=(-c "http.$${GITHUB_SERVER_URL:-https://github.com}/.extraheader=AUTHORIZATION: basic $$basic"); \
	fi; \
	git "$${auth[@]}" push origin "HEAD:refs/heads/$$HEAD_REF"

# ---------------------------------------------------------------- monitoring (monitor.yml)
# Building blocks of .github/workflows/monitor.yml. The report lands in $(MONITOR_DIR)
# (report.md, report.json, pr-body.md). The batch is the newest file of paths.production, or
# the file named by the MONITOR_BATCH environment variable (never interpolated into a recipe).
MONITOR_DIR ?= monitor-report
# DVC-tracked directory of labelled production batches that ingest appends to the training data.
EXTRA_DIR ?= data/extra
# Every retraining PR's branch starts with this; one open PR with it blocks the next.
RETRAIN_PREFIX ?= retrain/
.PHONY: monitor-inputs monitor monitor-open-pr monitor-retrain monitor-pr

# The model and reference profile to compare against: pulled from the DVC remote when one is
# configured (pr-pull), else reproduced; `dvc repro` is a no-op when the pull restored them.
monitor-inputs: setup
	@$(MAKE) --no-print-directory pr-pull
	$(VENV_PATH) $(BIN)/dvc repro

# Breach is not a failed step: exit 1 becomes `breach=true` in $GITHUB_OUTPUT (with `batch` and
# `labelled`); the Markdown report goes to the job summary. Exit 2 (bad input) fails the step.
monitor: setup
	@mkdir -p $(MONITOR_DIR)
	@if [[ -n "$${MONITOR_BATCH:-}" ]]; then set -- "$$MONITOR_BATCH"; else set -- --latest; fi; \
	rc=0; $(BIN)/python -m pipeline monitor "$$@" --format md --output $(MONITOR_DIR)/report.md \
	  --json-output $(MONITOR_DIR)/report.json || rc=$$?; \
	if [[ $$rc -ge 2 ]]; then exit $$rc; fi; \
	if [[ -n "$${GITHUB_STEP_SUMMARY:-}" ]]; then cat $(MONITOR_DIR)/report.md >> "$$GITHUB_STEP_SUMMARY"; fi; \
	$(BIN)/python -c 'import json, re, sys; r = json.load(open(sys.argv[1])); b = r["batch"]["source"]; \
	assert re.fullmatch(r"[A-Za-z0-9_./-]+", b), "unexpected batch name: " + repr(b); \
	print("breach=" + str(r["breach"]).lower()); print("batch=" + b); \
	print("labelled=" + str(r["performance"]["labelled_rows"] > 0).lower())' \
	  $(MONITOR_DIR)/report.json | tee -a "$${GITHUB_OUTPUT:-/dev/null}"

# open=true when a PR from a $(RETRAIN_PREFIX)* branch is open. A failing `gh` fails the target:
# never assume "none open" (that would open duplicates). REST, every page: the same API and
# token scope as the rest of the workflows (no GraphQL).
monitor-open-pr:
	@[[ -n "$${GITHUB_REPOSITORY:-}" ]] || { echo "GITHUB_REPOSITORY must name owner/repo" >&2; exit 2; }
	@heads="$$(gh api --paginate "repos/$$GITHUB_REPOSITORY/pulls?state=open&per_page=100" \
	  --jq '.[].head.ref')"; \
	open=false; \
	if grep -q '^$(RETRAIN_PREFIX)' <<<"$$heads"; then \
	  open=true; echo "::notice title=Retraining PR::one is already open: not opening another"; \
	fi; \
	echo "open=$$open" | tee -a "$${GITHUB_OUTPUT:-/dev/null}"

# Append the batch to the training data through DVC and rerun the pipeline: the batch is copied
# into $(EXTRA_DIR) and tracked with its own .dvc pointer (git holds the pointer, the DVC remote
# the bytes); ingest appends every batch of $(EXTRA_DIR) to the source data.
monitor-retrain: setup
	@[[ -n "$${MONITOR_BATCH:-}" && -f "$$MONITOR_BATCH" ]] \
	  || { echo "MONITOR_BATCH must name the batch file" >&2; exit 2; }
	mkdir -p $(EXTRA_DIR)
	cp -- "$$MONITOR_BATCH" $(EXTRA_DIR)/
	$(VENV_PATH) $(BIN)/dvc add -q -- "$(EXTRA_DIR)/$$(basename -- "$$MONITOR_BATCH")"
	$(VENV_PATH) $(BIN)/dvc repro

# Open the retraining PR with CML: the batch's .dvc pointer, dvc.lock and the new metrics, the
# monitoring report as the description. REPO_TOKEN (env) authenticates cml.
monitor-pr:
	@[[ -n "$${MONITOR_BATCH:-}" ]] || { echo "MONITOR_BATCH must name the batch file" >&2; exit 2; }
	@name="$$(basename -- "$$MONITOR_BATCH")"; name="$${name%.*}"; \
	name="$$(printf '%s' "$$name" | tr -c 'A-Za-z0-9._-' '-')"; \
	{ printf 'The scheduled monitor found a breach on production batch `%s`.\n\n' "$$name"; \
	  printf 'This PR appends the batch to the training data (`$(EXTRA_DIR)/`, tracked by DVC) and reruns the '; \
	  printf 'pipeline; the PR report comment compares the retrained model with `main`.\n\n'; \
	  cat $(MONITOR_DIR)/report.md; } > $(MONITOR_DIR)/pr-body.md; \
	cml pr create --branch "$(RETRAIN_PREFIX)$$name" \
	  --title "Retrain on production batch $$name (monitoring breach)" \
	  --message "Retrain: add production batch $$name to the training data" \
	  --body "$$(cat $(MONITOR_DIR)/pr-body.md)" \
	  --user-name "$(BOT_NAME)" --user-email "$(BOT_EMAIL)" \
	  dvc.lock '$(EXTRA_DIR)/*.dvc' '**/.gitignore' 'models/**'

# ---------------------------------------------------------------- model registry
# Building blocks of register.yml, promotion.yml and reconcile.yml. Tags are pushed with
# REGISTRY_PUSH_TOKEN (env), sent as an HTTP header by pipeline/registry.py and never stored.
.PHONY: registry-register registry-pull registry-pr-info registry-reconcile promotion-check

# On main: tag <model>@vX.Y.Z when dvc.lock pins a model that no version has yet.
registry-register: setup
	$(BIN)/python -m pipeline register --push

# Fill the DVC cache with the model of every tagged version (when a DVC remote is configured),
# so the policy's model_bytes rule can check each promoted model against its dvc.lock md5.
# Without the bytes that rule fails closed, unless the stage sets require_verified_model: false.
registry-pull: setup
	@if [[ -z "$${DVC_REMOTE_URL:-}" ]]; then \
	  echo "::warning title=DVC remote::DVC_REMOTE_URL is not configured: model bytes cannot be checked; promotion fails unless the policy sets require_verified_model: false"; \
	  exit 0; \
	fi; \
	$(MAKE) --no-print-directory remote LOCAL=1; \
	$(VENV_PATH) $(BIN)/dvc fetch --all-tags train \
	  || echo "::warning title=DVC remote::dvc fetch failed; promotion fails unless the policy sets require_verified_model: false"

# The merged pull request of HEAD and its last approving reviewer, for the audit record
# (pr=..., approver=... to $GITHUB_OUTPUT). Needs GH_TOKEN, REPO and SHA in the environment.
registry-pr-info:
	@pr="$$(gh api "repos/$$REPO/commits/$$SHA/pulls" \
	  --jq '[.[] | select(.merged_at != null)][0].number // empty')"; \
	approver=""; \
	if [[ -n "$$pr" ]]; then \
	  approver="$$(gh api --paginate "repos/$$REPO/pulls/$$pr/reviews" \
	    --jq '.[] | select(.state == "APPROVED") | .user.login' | tail -n 1)"; \
	fi; \
	[[ -z "$$pr" || "$$pr" =~ ^[0-9]+$$ ]] || { echo "unexpected PR number" >&2; exit 2; }; \
	[[ -z "$$approver" || "$$approver" =~ ^[A-Za-z0-9-]+(\[bot\])?$$ ]] \
	  || { echo "unexpected approver login" >&2; exit 2; }; \
	{ echo "pr=$$pr"; echo "approver=$$approver"; } | tee -a "$${GITHUB_OUTPUT:-/dev/null}"

# Create the stage tags models/registry.yaml asks for (policy re-checked, model md5 checked,
# audit record in each tag) and push them atomically. PR and APPROVER come from the environment.
registry-reconcile: setup
	$(BIN)/python -m pipeline reconcile --pr "$${PR:-}" --approver "$${APPROVER:-}" --push \
	  --output registry-report.md
	@cat registry-report.md
	@if [[ -n "$${GITHUB_STEP_SUMMARY:-}" ]]; then cat registry-report.md >> "$$GITHUB_STEP_SUMMARY"; fi

# A promotion PR: what reconcile would do after merge, judged by the BASE branch's policy
# (a PR cannot relax the rules it is judged by). Exit 1 when a policy fails; report.md always.
promotion-check: setup
	@mkdir -p $(PR_DIR)
	@rc=0; $(BIN)/python -m pipeline reconcile --dry-run --policy-rev "origin/$${BASE_REF:-main}" \
	  --output $(PR_DIR)/report.md || rc=$$?; \
	if [[ ! -s $(PR_DIR)/report.md ]]; then \
	  printf '## Model registry: promotion check\n\n❌ The promotion could not be evaluated (exit %s); see the workflow log.\n' \
	    "$$rc" > $(PR_DIR)/report.md; \
	fi; \
	if [[ -n "$${GITHUB_STEP_SUMMARY:-}" ]]; then cat $(PR_DIR)/report.md >> "$$GITHUB_STEP_SUMMARY"; fi; \
	exit $$rc

# Re-pin every dependency (with hashes) after editing pyproject.toml's dependency lists.
.PHONY: lock
lock: setup
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
	  -o requirements.lock
