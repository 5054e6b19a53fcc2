#!/usr/bin/env python3
"""workloads.py: the workflows and seeded input batches of bench/workflows.

Each workload is a function build_<name>(scale, rng) that returns a Workload:
the workflow (a dict in the format of docs/workflow-format.md), a batch of job
inputs (one dict of input name -> text per job) and, for workloads with tool
calls, the documents the local HTTP service answers with. Everything is fixed
by the seed: the same (name, scale, seed) always gives byte-identical workflows
and inputs. Python standard library only.

Shapes follow the Helium paper (map-reduce with 14 experts, debate with 3
agents and 2 rounds, reflection with 1 expert and 2 critics, iterative
refinement over 6 chunks, parallel chains of 7 experts x 6 chunks, a
trading-like composite of about 90 LLM operators at paper scale) plus the
retail agents (store monitoring, customer service with a tool call, personal
shopping). The scale ("small" for a 2-core CPU with the small generated model,
"paper" for the issue's lengths) sets text lengths, output lengths, batch
sizes and the fan-out widths that the paper varies. All calls are greedy.

Every batch carries the redundancy real traffic has: shared system prompts and
documents placed first in each prompt (so they form shared prefixes), and some
requests that repeat exactly across the batch (the same document submitted
twice, the same order looked up by several tickets, stores whose report did
not change). The `notes` field of each Workload says which.

Run it as a script to write every workflow of a scale as JSON, for reading
(bench/workloads/small/*.json and paper/*.json are written this way; the
driver builds the same workflows in memory and warns if these files are stale):
    python3 bench/workloads/workloads.py [--scale small|paper] [--out DIR]
"""
import argparse
import json
import os
import random

# Characters per token of the generated prose under the generated models' BPE
# tokenizer (measured with `helium-worker tokenize` on this generator's text);
# only used to aim text lengths, the driver reports the real token counts.
CHARS_PER_TOKEN = 3.5

SCALES = {
    # 2-core CPU, small generated model (prefill ~6k tok/s, decode ~0.4k tok/s
    # per worker thread): the whole run (9 workloads x 5 policies) in ~15 min.
    "small": {
        "doc": (600, 1200),         # document / context lengths, tokens
        "chunk": (150, 300),        # one section of a chunked document
        "short": (80, 160),         # small inputs: store reports, profiles, histories
        "catalogue": (900, 1300),
        "out_short": 32,            # max_tokens of fan-out operators
        "out_long": 64,             # max_tokens of reducers, drafts, summaries
        "out_tiny": 8,              # labels
        "batch": 6,
        "cs_batch": 16,
        "stores": (3, 16),          # districts x stores per district
        "store_days": 2,
        "trading": (8, 2, 16),      # analysts, debate rounds, risk factors
    },
    # The settings: contexts of 500-4,000 tokens, outputs of 32-256.
    "paper": {
        "doc": (500, 4000),
        "chunk": (300, 700),
        "short": (100, 300),
        "catalogue": (1500, 3000),
        "out_short": 64,
        "out_long": 256,
        "out_tiny": 8,
        "batch": 8,
        "cs_batch": 32,
        "stores": (10, 20),
        "store_days": 2,
        "trading": (14, 4, 64),
    },
}


class Workload:
    """One benchmark workload: workflow, job inputs, tool service, notes."""

    def __init__(self, name, workflow, jobs, notes, service=None):
        self.name = name
        self.workflow = workflow          # dict (docs/workflow-format.md)
        self.jobs = jobs                  # list of {input name: text}
        self.notes = notes                # shape and redundancy, for the report
        self.service = service or {}      # HTTP path -> JSON body (tool calls)

    def n_llm_ops(self, job_inputs):
        """LLM calls one job makes (map bodies count once per item)."""
        n = 0
        for op in self.workflow["ops"]:
            if op["type"] == "llm":
                n += 1
            elif op["type"] == "loop":  # the most it can make (every round runs)
                n += op.get("max_rounds", 3) * sum(1 for b in op["body"] if b["type"] == "llm")
            elif op["type"] == "map" and op["body"]["type"] == "llm":
                src = op["over"].split(".", 1)[1]
                n += len([ln for ln in job_inputs[src].split("\n") if ln.strip()])
        return n


# ---------------------------------------------------------------- prose

_SUBJECTS = ["the company", "the regional team", "management", "the board", "the finance group",
             "the logistics unit", "our largest customer", "the new supplier", "the audit committee",
             "the product line", "the northern stores", "the online channel", "the service desk",
             "the warehouse in Dresden", "the pricing team", "the store managers", "the analysts",
             "the distribution centre", "the marketing department", "the procurement office"]
_VERBS = ["reported", "expects", "reviewed", "announced", "reduced", "increased", "delayed",
          "approved", "questioned", "measured", "confirmed", "revised", "postponed", "launched",
          "negotiated", "recorded", "estimated", "noted", "planned", "completed"]
_OBJECTS = ["operating costs", "quarterly revenue", "the delivery schedule", "staff turnover",
            "the refund backlog", "inventory levels", "customer complaints", "the loyalty programme",
            "freight rates", "energy spending", "the capital budget", "supplier contracts",
            "shelf availability", "the return rate", "average basket size", "gross margin",
            "the hiring plan", "cash reserves", "the rollout of self checkout", "weekend footfall"]
_TAILS = ["by {p} percent compared with last year", "for the third quarter in a row",
          "after a review of {n} stores", "ahead of the winter season", "despite higher wages",
          "because of a shortage of {item}", "in {n} of its {m} regions", "at a cost of {n} thousand euros",
          "following complaints from {n} customers", "while demand for {item} kept rising",
          "until the new system is tested", "with a target of {p} percent by March",
          "after the storm closed {n} stores", "as prices for {item} fell", "within {n} business days"]
_ITEMS = ["winter coats", "garden furniture", "coffee beans", "camping stoves", "kettles",
          "fresh fruit", "school bags", "running shoes", "phone chargers", "frozen pizza",
          "olive oil", "bicycle helmets", "paper towels", "rain jackets", "baby food"]
_LINKS = ["Meanwhile,", "In addition,", "However,", "As a result,", "According to the report,",
          "At the same time,", "Separately,", "For now,", "In contrast,", "Overall,"]


def sentence(rng):
    tail = rng.choice(_TAILS).format(p=rng.randint(2, 40), n=rng.randint(2, 90), m=rng.randint(91, 300),
                                     item=rng.choice(_ITEMS))
    s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {tail}."
    if rng.random() < 0.35:
        s = f"{rng.choice(_LINKS)} {s}"
    return s[0].upper() + s[1:]


def prose(rng, tokens, title=None):
    """About `tokens` tokens of paragraphs (title line first if given)."""
    want = int(tokens * CHARS_PER_TOKEN)
    parts, n, para = ([title] if title else []), 0, []
    n = len(title) if title else 0
    while n < want:
        s = sentence(rng)
        para.append(s)
        n += len(s) + 1
        if len(para) >= rng.randint(3, 6):
            parts.append(" ".join(para))
            para = []
    if para:
        parts.append(" ".join(para))
    return "\n\n".join(parts)


def span(rng, rng_range):
    lo, hi = rng_range
    return rng.randint(lo, hi)


def llm(op_id, prompt, max_tokens):
    return {"id": op_id, "type": "llm", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}


def repeat(jobs, src, dst):
    """Job dst becomes an exact copy of job src (a repeated request)."""
    jobs[dst] = dict(jobs[src])


# ---------------------------------------------------------------- workloads

_MR_ASPECTS = [("finance", "revenue, costs, margins, cash position and funding needs"),
               ("legal", "contracts, liabilities, regulation and open disputes"),
               ("operations", "staffing, supply chain, delivery capacity and execution risk"),
               ("market", "customers, competitors, pricing and demand trends"),
               ("technology", "systems, data, security and technical debt"),
               ("people", "leadership, hiring, retention and culture"),
               ("customers", "satisfaction, complaints, churn and loyalty"),
               ("competition", "rivals' moves, market share and differentiation"),
               ("risk", "the largest threats and how likely they are"),
               ("strategy", "goals, priorities and whether the plan is coherent"),
               ("sustainability", "energy, waste, emissions and reporting duties"),
               ("suppliers", "supplier concentration, terms and reliability"),
               ("regulation", "upcoming rules and the cost of compliance"),
               ("governance", "board oversight, controls and reporting quality")]

_PANEL_SYSTEM = (
    "You are part of a panel of senior analysts at a mid-sized consulting firm. The panel reviews documents that "
    "clients send in and writes short, concrete assessments that a busy executive can read in under a minute. "
    "Every panel member follows the same rules. Base every claim on the document; if the document does not say "
    "something, write \"not stated\" instead of guessing. Quote numbers exactly as they appear, with their units and "
    "time periods. Prefer plain words to jargon. Lead with the single most important finding, then give at most "
    "four supporting points. Flag anything that looks inconsistent between two parts of the document. End with one "
    "line that starts with \"Confidence:\" followed by high, medium or low.")


def build_map_reduce(sc, rng, experts=14):
    aspects = _MR_ASPECTS[:experts]
    ops = []
    for a, desc in aspects:
        ops.append(llm(a, "{{input.system}}\n\n<document>\n{{input.document}}\n</document>\n\n"
                       f"Your aspect is {a.upper()}: {desc}.\nAssessment:\n", sc["out_short"]))
    body = "\n\n".join(f"{a.capitalize()}:\n{{{{op.{a}}}}}" for a, _ in aspects)
    ops.append(llm("reduce", "{{input.system}}\n\nYou are now the panel chair. The panel members assessed the same "
                   "document, each from one aspect. Merge their assessments into one executive summary: the three "
                   "findings that matter most, any disagreement between members, and a recommended next step.\n\n"
                   f"{body}\n\nExecutive summary:\n", sc["out_long"]))
    wf = {"name": "map_reduce", "description": f"{experts} experts read one document; a reducer merges them.",
          "inputs": [{"name": "system", "default": _PANEL_SYSTEM}, "document"], "ops": ops, "output": "reduce"}
    jobs = [{"document": prose(rng, span(rng, sc["doc"]), f"Client document {i + 1}: annual business review")}
            for i in range(sc["batch"])]
    repeat(jobs, 0, len(jobs) - 1)
    return Workload("map_reduce", wf, jobs, f"{experts} experts + 1 reducer per job; the last job repeats the "
                    "first job's document (the same document submitted twice)")


_DEBATE_SYSTEM = (
    "This is a structured debate between participants who examine one question about a company's plans from "
    "different angles. Each participant argues in good faith: they state their position, give the strongest "
    "reasons for it, and respond directly to the other participants' points. Arguments must be specific, use the "
    "briefing's facts and figures, and stay under 120 words per turn. No personal remarks.")
_DEBATE_ROLES = [("optimist", "you look for the benefits and the ways the idea can succeed"),
                 ("skeptic", "you look for costs, risks and the ways the idea can fail"),
                 ("pragmatist", "you look for what would have to be true, and the cheapest test"),
                 ("economist", "you look at incentives, prices and second-order effects"),
                 ("operator", "you look at what it takes to run the idea day to day")]


def build_debate(sc, rng, agents=3, rounds=2):
    roles = _DEBATE_ROLES[:agents]
    head = "{{input.system}}\n\nBriefing:\n{{input.briefing}}\n\nQuestion: {{input.question}}\n\n"
    ops, transcript = [], ""
    for r in range(1, rounds + 1):
        for name, desc in roles:
            ask = ("Opening statement:\n" if r == 1 else
                   "Respond to the other participants' strongest points and restate your position.\nRebuttal:\n")
            ops.append(llm(f"{name}_r{r}", head + transcript + f"You are the {name.upper()}: {desc}.\n" + ask,
                           sc["out_short"]))
        transcript += f"Round {r}:\n" + "".join(f"{n.upper()}: {{{{op.{n}_r{r}}}}}\n\n" for n, _ in roles)
    ops.append(llm("verdict", head + transcript + "As a neutral moderator, summarize where the participants agree, "
                   "where they still disagree, and the most useful next step.\nModerator summary:\n", sc["out_long"]))
    wf = {"name": "debate", "description": f"{agents} agents, {rounds} rounds, a moderator.",
          "inputs": [{"name": "system", "default": _DEBATE_SYSTEM}, "briefing", "question"], "ops": ops,
          "output": "verdict"}
    briefing = prose(rng, span(rng, sc["doc"]), "Strategy briefing for the leadership offsite")
    qs = ["Should the company open ten more stores next year?", "Should the online channel offer free returns?",
          "Should the company replace its warehouse software this year?", "Should prices be cut on staple goods?",
          "Should the loyalty programme be paid?", "Should the stores extend opening hours?",
          "Should the company build its own delivery fleet?", "Should suppliers be paid faster for a discount?",
          "Should the northern stores be merged?", "Should the company enter the furniture market?",
          "Should self checkout be removed?", "Should the head office move?"]
    jobs = [{"briefing": briefing, "question": qs[i % len(qs)]} for i in range(sc["batch"])]
    repeat(jobs, 1, len(jobs) - 1)
    return Workload("debate", wf, jobs, f"{agents} agents x {rounds} rounds + moderator ({agents * rounds + 1} ops); "
                    "all jobs share one briefing (questions differ); the last job repeats job 2's question")


_REFLECT_SYSTEM = (
    "You work on a team that answers internal questions about the company's operations. Answers must be correct, "
    "grounded in the context document, and useful to a store manager who reads them on a phone: short paragraphs, "
    "numbers with units, no speculation. Reviewers on the team check each answer before it goes out.")


def build_reflection(sc, rng, critics=2):
    head = "{{input.system}}\n\nContext:\n{{input.context}}\n\nQuestion: {{input.question}}\n\n"
    lenses = [("accuracy", "check every claim against the context and list the ones it does not support"),
              ("clarity", "check whether a store manager can act on it and list what is unclear or missing"),
              ("tone", "check whether it is polite, neutral and free of blame")][:critics]
    ops = [llm("answer", head + "Answer:\n", sc["out_long"])]
    for name, desc in lenses:
        ops.append(llm(f"critic_{name}", head + "Answer under review:\n{{op.answer}}\n\n"
                       f"You are the {name.upper()} reviewer: {desc}.\nReview:\n", sc["out_short"]))
    reviews = "".join(f"{n.capitalize()} review:\n{{{{op.critic_{n}}}}}\n\n" for n, _ in lenses)
    ops.append(llm("revise", head + "Answer under review:\n{{op.answer}}\n\n" + reviews +
                   "Write the final answer, fixing every point the reviewers raised.\nFinal answer:\n", sc["out_long"]))
    wf = {"name": "reflection", "description": f"1 expert, {critics} critics, a revision.",
          "inputs": [{"name": "system", "default": _REFLECT_SYSTEM}, "context", "question"], "ops": ops,
          "output": "revise"}
    qs = ["What changed in the delivery schedule and why?", "Which costs rose the most?",
          "What should the stores prepare for next month?", "Which suppliers caused delays?",
          "How did customer complaints develop?", "What does the report say about staffing?"]
    jobs = [{"context": prose(rng, span(rng, sc["doc"]), f"Operations report {i + 1}"), "question": qs[i % len(qs)]}
            for i in range(sc["batch"])]
    repeat(jobs, 0, len(jobs) - 1)
    return Workload("reflection", wf, jobs, f"answer, {critics} critics, revision ({critics + 2} ops); the last job "
                    "repeats the first (same context and question)")


_SUMMARY_SYSTEM = (
    "You summarize long internal reports section by section for the executive team. The running summary must stay "
    "under 150 words, keep every figure that matters, drop repetition, and say plainly when a later section "
    "contradicts an earlier one.")


def build_refinement(sc, rng, chunks=6):
    ops = [llm("s1", "{{input.system}}\n\nSection 1:\n{{input.chunk1}}\n\nWrite the running summary of the report "
               "so far.\nSummary:\n", sc["out_long"])]
    for k in range(2, chunks + 1):
        ops.append(llm(f"s{k}", f"{{{{input.system}}}}\n\nRunning summary of sections 1-{k - 1}:\n{{{{op.s{k - 1}}}}}"
                       f"\n\nSection {k}:\n{{{{input.chunk{k}}}}}\n\nUpdate the running summary with what section "
                       f"{k} adds or changes.\nSummary:\n", sc["out_long"]))
    wf = {"name": "refinement", "description": f"iterative refinement of a running summary over {chunks} chunks",
          "inputs": [{"name": "system", "default": _SUMMARY_SYSTEM}] + [f"chunk{k}" for k in range(1, chunks + 1)],
          "ops": ops, "output": f"s{chunks}"}
    jobs = []
    for i in range(sc["batch"]):
        jobs.append({f"chunk{k}": prose(rng, span(rng, sc["chunk"]), f"Report {i + 1}, part {k}")
                     for k in range(1, chunks + 1)})
    repeat(jobs, 0, len(jobs) - 1)
    return Workload("refinement", wf, jobs, f"a chain of {chunks} summary updates; the last job repeats the first "
                    "(same report)")


_CHAIN_ROLES = ["finance", "legal", "operations", "customers", "technology", "people", "risk", "market", "supply"]


def build_parallel_chains(sc, rng, experts=7, chunks=6):
    roles = _CHAIN_ROLES[:experts]
    ops = []
    for r in roles:
        for k in range(1, chunks + 1):
            prev = "(none yet)" if k == 1 else f"{{{{op.{r}_{k - 1}}}}}"
            ops.append(llm(f"{r}_{k}", f"{{{{input.system}}}}\n\nSection {k}:\n{{{{input.chunk{k}}}}}\n\n"
                           f"You are the {r.upper()} expert. Your notes on the earlier sections:\n{prev}\n\n"
                           f"Update your notes with what section {k} adds for your area.\nNotes:\n", sc["out_short"]))
    notes = "\n\n".join(f"{r.capitalize()} notes:\n{{{{op.{r}_{chunks}}}}}" for r in roles)
    ops.append(llm("merge", f"{{{{input.system}}}}\n\n{notes}\n\nCombine the experts' notes into one report for the "
                   "executive team.\nReport:\n", sc["out_long"]))
    wf = {"name": "parallel_chains", "description": f"{experts} expert chains over {chunks} chunks, then a merge",
          "inputs": [{"name": "system", "default": _PANEL_SYSTEM}] + [f"chunk{k}" for k in range(1, chunks + 1)],
          "ops": ops, "output": "merge"}
    jobs = []
    for i in range(sc["batch"]):
        jobs.append({f"chunk{k}": prose(rng, span(rng, sc["chunk"]), f"Filing {i + 1}, section {k}")
                     for k in range(1, chunks + 1)})
    repeat(jobs, 1, len(jobs) - 1)
    return Workload("parallel_chains", wf, jobs, f"{experts} chains x {chunks} steps + merge ({experts * chunks + 1} "
                    "ops); the experts of one step share the section prefix; the last job repeats job 2")


_TRADING_SYSTEM = (
    "You are part of a research desk that decides on trades in listed retail companies. Every desk member writes "
    "concisely, cites the figures they rely on, separates facts from opinions, and states a view: buy, hold or "
    "sell, with a confidence. The desk never trades on rumours and always sizes positions to the risk budget.")
_ANALYSTS = [("macro", False), ("rates", False), ("fundamentals", True), ("sentiment", True), ("news", True),
             ("technical", True), ("valuation", True), ("credit", True), ("supply_chain", True), ("esg", True),
             ("management", True), ("competition", True), ("consumer", True), ("flows", True), ("options", True),
             ("insider", True)]
_RISKS = ["interest rates rise faster than expected", "consumer spending falls", "a key supplier fails",
          "energy prices double", "a data breach exposes customer records", "the currency weakens",
          "a competitor cuts prices", "new packaging rules take effect", "wage settlements exceed inflation",
          "a warehouse fire", "shipping routes close", "a product recall", "the credit rating is cut",
          "the chief executive leaves", "online sales stall", "a cold summer", "rent reviews come in high",
          "tariffs on imports", "a strike at the distribution centre", "a large shareholder sells"]


def build_trading(sc, rng, analysts=None, rounds=None, risks=None):
    a_n, r_n, k_n = sc["trading"]
    analysts, rounds, risks = analysts or a_n, rounds or r_n, risks or k_n
    sel = _ANALYSTS[:analysts]
    news = "{{input.system}}\n\nMarket news digest:\n{{input.news}}\n\n"
    full = news + "Company report for {{input.ticker}}:\n{{input.report}}\n\n"
    ops = []
    for name, reads_report in sel:
        ops.append(llm(f"an_{name}", (full if reads_report else news) +
                       f"You are the {name.upper().replace('_', ' ')} analyst. Write your view for "
                       + ("{{input.ticker}}" if reads_report else "the retail sector as a whole") + ".\nReport:\n",
                       sc["out_short"]))
    reports = "".join(f"{n.upper()}: {{{{op.an_{n}}}}}\n\n" for n, _ in sel)
    head = "{{input.system}}\n\nAnalyst reports on {{input.ticker}}:\n" + reports
    transcript = ""
    for r in range(1, rounds + 1):
        for side in ("bull", "bear"):
            ops.append(llm(f"{side}_r{r}", head + transcript + f"You are the {side.upper()} researcher. "
                           + ("Argue your case." if r == 1 else "Answer the other side's last argument.")
                           + "\nArgument:\n", sc["out_short"]))
        transcript += f"Round {r}:\nBULL: {{{{op.bull_r{r}}}}}\n\nBEAR: {{{{op.bear_r{r}}}}}\n\n"
    ops.append(llm("plan", head + transcript + "As the research manager, weigh the debate and write the investment "
                   "plan.\nPlan:\n", sc["out_long"]))
    ops.append(llm("proposal", "{{input.system}}\n\nInvestment plan for {{input.ticker}}:\n{{op.plan}}\n\nAs the "
                   "trader, turn the plan into a concrete order with size and limits.\nProposal:\n", sc["out_long"]))
    ops.append({"id": "risk", "type": "map", "over": "input.risks", "split": "lines", "max_width": 256,
                "body": llm("risk.body", "{{input.system}}\n\nTrade proposal for {{input.ticker}}:\n{{op.proposal}}"
                            "\n\nRisk factor: {{item}}\n\nAssess how this risk factor affects the proposal.\n"
                            "Assessment:\n", sc["out_short"])})
    ops[-1]["body"].pop("id")
    ops.append(llm("decision", "{{input.system}}\n\nTrade proposal for {{input.ticker}}:\n{{op.proposal}}\n\n"
                   "Risk assessments:\n{{op.risk}}\n\nAs the risk manager, approve, resize or reject the "
                   "proposal.\nDecision:\n", sc["out_long"]))
    wf = {"name": "trading", "description": f"{analysts} analysts, a {rounds}-round bull/bear debate, a plan, a "
          f"proposal, a map over {risks} risk factors and a decision",
          "inputs": [{"name": "system", "default": _TRADING_SYSTEM}, "news", "ticker", "report", "risks"],
          "ops": ops, "output": "decision"}
    digest = prose(rng, span(rng, sc["doc"]), "Retail sector news digest")
    lines = []
    for i in range(risks):
        base = _RISKS[i % len(_RISKS)]
        lines.append(base if i < len(_RISKS) else f"{base} (scenario {i // len(_RISKS) + 1})")
    risk_lines = "\n".join(lines)
    tickers = ["NWO", "KSM", "BLT", "FRH", "GRN", "PLM", "TRV", "OKA", "MRS", "VEL", "HAL", "DUN", "ZET", "QRX",
               "LUM", "ASH"]
    jobs = [{"news": digest, "ticker": tickers[i % len(tickers)], "risks": risk_lines,
             "report": prose(rng, span(rng, sc["doc"]), f"Quarterly report of {tickers[i % len(tickers)]}")}
            for i in range(sc["batch"])]
    n_ops = analysts + 2 * rounds + 2 + risks + 1
    news_only = sum(1 for _, rr in sel if not rr)
    return Workload("trading", wf, jobs, f"{n_ops} LLM ops per job ({analysts} analysts, {2 * rounds} debate turns, "
                    f"plan, proposal, {risks} risk assessments, decision); all jobs share the news digest, and the "
                    f"{news_only} analysts that read only the digest make identical calls in every job")


_STORE_SYSTEM = (
    "You are the overnight operations assistant for a chain of grocery stores. Each morning you read the metrics a "
    "store reported for the previous day and write a short status note for the regional manager. Write exactly "
    "three lines: STATUS (OK, WATCH or ACTION), WHY (the metrics that drove the status, with their values), NEXT (one "
    "concrete step, or none). Never invent metrics that are not in the report.")
_STORE_RULES = (
    "Company guidelines for this quarter:\n- Sales more than 15% below the same weekday last year: WATCH; more than "
    "30% below: ACTION.\n- Out-of-stock rate above 4% of tracked items: WATCH; above 8%: ACTION.\n- Any "
    "refrigeration alarm lasting more than 20 minutes: ACTION.\n- Staff absence above 20% of the shift: WATCH.\n- "
    "More than 5 customer complaints in a day: WATCH; any food safety complaint: ACTION.\n- Shrink above 2.5% of "
    "sales: WATCH.\nWhen several rules apply, report the most severe status and name every rule that applied.")


def store_report(rng, store, tokens):
    r = (f"Store {store}: sales {rng.randint(20, 160)}k EUR ({rng.randint(-45, 25):+d}% vs last year), "
         f"out-of-stock {rng.randint(0, 120) / 10:.1f}%, refrigeration alarms {rng.randint(0, 3)} "
         f"(longest {rng.randint(0, 60)} min), staff absence {rng.randint(0, 35)}%, complaints {rng.randint(0, 9)}, "
         f"shrink {rng.randint(0, 40) / 10:.1f}%. Manager comment: ")
    return r + prose(rng, max(10, tokens - len(r) // 4)).replace("\n\n", " ")


def build_store_monitoring(sc, rng, districts=None, per_district=None):
    d_n, s_n = sc["stores"]
    districts, per_district = districts or d_n, per_district or s_n
    head = "{{input.system}}\n\n{{input.guidelines}}\n\n"
    ops = []
    for d in range(1, districts + 1):
        ops.append({"id": f"check_d{d}", "type": "map", "over": f"input.stores_d{d}", "split": "lines",
                    "max_width": 256, "body": {"type": "llm", "prompt": head + "Store report:\n{{item}}\n\n"
                                               "Status note:\n", "max_tokens": sc["out_short"], "temperature": 0}})
        ops.append(llm(f"district_d{d}", head + f"Status notes from district {d}, one per line:\n{{{{op.check_d{d}}}}}"
                       "\n\nSummarize the district: counts per status, then the ACTION stores.\nDistrict summary:\n",
                       sc["out_long"]))
    sums = "".join(f"District {d}:\n{{{{op.district_d{d}}}}}\n\n" for d in range(1, districts + 1))
    ops.append(llm("region", head + sums + "Write the regional summary for the manager: counts per status, the "
                   "ACTION stores first with their next steps.\nRegional summary:\n", sc["out_long"]))
    wf = {"name": "store_monitoring", "description": f"a map over {districts * per_district} stores in {districts} "
          "districts, district summaries and a regional summary",
          "inputs": [{"name": "system", "default": _STORE_SYSTEM}, {"name": "guidelines", "default": _STORE_RULES}]
          + [f"stores_d{d}" for d in range(1, districts + 1)], "ops": ops, "output": "region"}
    n_stores = districts * per_district
    unchanged = set(rng.sample(range(n_stores), max(1, n_stores // 4)))  # same report on every day
    fixed = {s: store_report(rng, s + 1, span(rng, sc["short"])) for s in unchanged}
    jobs = []
    for day in range(sc["store_days"]):
        job = {}
        for d in range(districts):
            lines = []
            for j in range(per_district):
                s = d * per_district + j
                lines.append(fixed[s] if s in unchanged else store_report(rng, s + 1, span(rng, sc["short"])))
            job[f"stores_d{d + 1}"] = "\n".join(lines)
        jobs.append(job)
    return Workload("store_monitoring", wf, jobs, f"{sc['store_days']} jobs (days) x {n_stores} stores, "
                    f"{districts} district summaries + 1 regional summary per job; {len(unchanged)} stores send the "
                    "same report every day (identical calls across jobs)")


_CS_SYSTEM = (
    "You are a customer service assistant for Northwind Outfitters, an online store that sells outdoor clothing and "
    "camping gear. You help customers with orders, deliveries, returns and product questions. You are polite, brief "
    "and specific. You never promise refunds, discounts or delivery dates that the order system has not confirmed, "
    "and you never ask for a password or full card number. Returns are accepted within 30 days of delivery for "
    "unused items with tags; shipping for returns is free for members and costs 5.95 otherwise. Orders ship within "
    "two business days; standard delivery takes three to five business days. Express delivery takes one to two "
    "business days and costs 9.95. Damaged items are replaced at no cost once the customer sends a photo. Gift "
    "cards cannot be refunded. Members earn one point per euro and can redeem 100 points for 5 euros.")
_CS_MESSAGES = ["Where is my order? It was supposed to arrive on Monday and the tracking page has not changed.",
                "I want to return the rain jacket, it is too small. How do I do that?",
                "The tent arrived with a broken pole. What can you do?",
                "Can I change the delivery address for my order? I am moving this week.",
                "I was charged twice for the same order, please check.",
                "Does the sleeping bag in my order work below zero degrees?",
                "Please cancel the second item in my order, I ordered it by mistake.",
                "My order says delivered but nothing is at my door."]


def order_record(rng, oid):
    items = rng.sample(_ITEMS + ["hiking boots", "a two-person tent", "a sleeping bag", "trekking poles"],
                       rng.randint(1, 3))
    return {"order_id": oid, "status": rng.choice(["processing", "shipped", "in transit", "delivered", "delayed"]),
            "placed": f"2025-11-{rng.randint(1, 20):02d}", "carrier": rng.choice(["DHL", "UPS", "PostNord"]),
            "tracking": f"TRK{rng.randint(10**7, 10**8 - 1)}", "member": rng.random() < 0.5,
            "items": [{"name": it, "qty": rng.randint(1, 2), "price_eur": round(rng.uniform(9, 240), 2)}
                      for it in items],
            "notes": prose(rng, 30).replace("\n\n", " ")}


def build_customer_service(sc, rng):
    ops = [llm("intent", "{{input.system}}\n\nConversation so far:\n{{input.history}}\n\nClassify the customer's new "
               "message into exactly one of: order_status, return_request, product_question, complaint, other. "
               "Answer with the label only.\n\nCustomer message:\n{{input.message}}\n\nLabel:", sc["out_tiny"]),
           {"id": "order", "type": "tool", "method": "GET", "url": "{{input.orders_url}}/{{input.order_id}}",
            "headers": {"Accept": "application/json"}, "timeout_ms": 5000, "max_response_bytes": 65536},
           llm("draft", "{{input.system}}\n\nConversation so far:\n{{input.history}}\n\nCustomer message:\n"
               "{{input.message}}\n\nIntent: {{op.intent}}\nOrder record from the order system (JSON):\n{{op.order}}"
               "\n\nWrite a reply that answers the message using only facts from the order record and the store "
               "policies above.\nDraft reply:\n", sc["out_long"]),
           # a bounded self-check loop: polish the reply until the checker approves it, at most 2 rounds
           # (round 2 reads round 1's reply through {{prev}}, known only at run time)
           {"id": "review", "type": "loop", "max_rounds": 2, "until_contains": "APPROVED", "output": "polish",
            "body": [llm("polish", "{{input.system}}\n\nHere is a draft reply to a customer. Fix grammar, remove "
                         "anything the order record does not support, keep it under 120 words, and sign it \"The "
                         "Northwind team\". If the previous revision below already does all that, answer APPROVED."
                         "\n\nDraft:\n{{op.draft}}\n\nPrevious revision:\n{{prev}}\n\nFinal reply:\n",
                         sc["out_long"])]}]
    wf = {"name": "customer_service", "description": "intent, order lookup (HTTP tool), draft, polish loop",
          "inputs": [{"name": "system", "default": _CS_SYSTEM}, "history", "message", "order_id", "orders_url"],
          "allow_hosts": ["127.0.0.1"], "ops": ops, "output": "review"}
    n = sc["cs_batch"]
    oids = [f"NW{100000 + rng.randint(0, 899999)}" for _ in range(n)]
    for j in range(3, n, 3):  # every third ticket is about an order another ticket already asked about
        oids[j] = oids[0]
    service = {f"/orders/{oid}": json.dumps(order_record(random.Random(f"order-{oid}"), oid), sort_keys=True)
               for oid in oids}
    jobs = []
    for i in range(n):
        hist = prose(rng, span(rng, sc["short"])).replace("\n\n", "\n")
        jobs.append({"history": "Customer: " + hist.replace("\n", "\nAgent: ", 1), "message":
                     _CS_MESSAGES[i % len(_CS_MESSAGES)], "order_id": oids[i]})
    if n >= 6:
        repeat(jobs, 2, 5)  # a customer who sends the same message twice
    return Workload("customer_service", wf, jobs, f"{n} tickets: intent, HTTP order lookup, draft, and a polish "
                    "loop (until APPROVED, at most 2 rounds; the random-weight model never approves, so 2); tickets "
                    "1, 4, 7, ... look up the same order; ticket 6 repeats ticket 3 exactly", service)


_SHOP_SYSTEM = (
    "You are a personal shopping assistant for a department store. You suggest complete outfits from the store's "
    "catalogue for a specific customer. A good suggestion respects the customer's budget, sizes, stated dislikes and "
    "the occasion; it names each item with its catalogue price and gives the total. Suggest only items that appear "
    "in the catalogue. Prefer fewer, better items, and explain each choice in at most one short sentence.")
_STYLES = [("classic", "timeless cuts, neutral colours, quality fabrics"),
           ("modern", "clean lines, current silhouettes, one bold accent"),
           ("casual", "comfort first, easy layers, practical shoes"),
           ("bold", "strong colour or pattern, statement accessories"),
           ("outdoor", "weatherproof layers that still look smart"),
           ("minimal", "as few pieces as possible, all combinable")]


def catalogue(rng, tokens):
    kinds = ["wool coat", "linen shirt", "chinos", "trainers", "leather belt", "silk scarf", "knit jumper",
             "denim jacket", "ankle boots", "blazer", "midi dress", "rain jacket", "loafers", "cardigan",
             "wide-leg trousers", "polo shirt", "tote bag", "sunglasses", "parka", "turtleneck"]
    colours = ["navy", "camel", "black", "olive", "cream", "burgundy", "grey", "rust", "sky blue", "forest green"]
    lines, n, i = ["Catalogue (item code, name, colour, sizes, price):"], 0, 0
    while n < tokens * 1.8:  # item lines: ~1.8 characters per token (codes, numbers)
        ln = (f"C{1000 + i}: {rng.choice(colours)} {rng.choice(kinds)}, sizes {rng.choice(['XS-XL', 'S-XXL', '36-46', '38-48'])}, "
              f"{rng.randint(15, 400)}.{rng.choice(['00', '50', '95'])} EUR")
        lines.append(ln)
        n += len(ln) + 1
        i += 1
    return "\n".join(lines)


def build_personal_shopping(sc, rng, branches=4):
    styles = _STYLES[:branches]
    head = "{{input.system}}\n\n{{input.catalogue}}\n\nCustomer profile:\n{{input.profile}}\n\n"
    ops = [llm(f"style_{s}", head + f"Explore a {s.upper()} direction: {d}.\nOutfit suggestion:\n", sc["out_short"])
           for s, d in styles]
    props = "".join(f"{chr(65 + i)} ({s}):\n{{{{op.style_{s}}}}}\n\n" for i, (s, _) in enumerate(styles))
    ops.append(llm("pick", "{{input.system}}\n\nCustomer profile:\n{{input.profile}}\n\nStylists each proposed one "
                   f"outfit.\n\n{props}Rank the proposals from best to worst, one line each, then present the winning "
                   "outfit in a warm, short message.\nRanking:\n", sc["out_long"]))
    wf = {"name": "personal_shopping", "description": f"{branches} speculative style branches and a pick",
          "inputs": [{"name": "system", "default": _SHOP_SYSTEM}, "catalogue", "profile"], "ops": ops,
          "output": "pick"}
    cat = catalogue(rng, span(rng, sc["catalogue"]))
    jobs = []
    for i in range(sc["batch"]):
        prof = (f"Customer {i + 1}: size {rng.choice(['S', 'M', 'L', 'XL'])}, shoes {rng.randint(36, 46)}, budget "
                f"{rng.randint(150, 900)} EUR, occasion: {rng.choice(['wedding guest', 'new job', 'city trip', 'autumn wardrobe', 'hiking weekend'])}. "
                + prose(rng, span(rng, sc["short"])).replace("\n\n", " "))
        jobs.append({"catalogue": cat, "profile": prof})
    repeat(jobs, 0, len(jobs) - 1)
    return Workload("personal_shopping", wf, jobs, f"{branches} style branches + pick per job; every job shares the "
                    "catalogue; the last job repeats the first customer's request")


BUILDERS = {
    "map_reduce": build_map_reduce,
    "debate": build_debate,
    "reflection": build_reflection,
    "refinement": build_refinement,
    "parallel_chains": build_parallel_chains,
    "trading": build_trading,
    "store_monitoring": build_store_monitoring,
    "customer_service": build_customer_service,
    "personal_shopping": build_personal_shopping,
}
NAMES = list(BUILDERS)


def build(name, scale="small", seed=1, batch=None):
    """The workload `name` at `scale` with inputs from `seed` (batch overrides the batch size)."""
    if name not in BUILDERS:
        raise KeyError(f"unknown workload '{name}' (have: {', '.join(NAMES)})")
    sc = dict(SCALES[scale])
    if batch:
        sc["batch"] = sc["cs_batch"] = sc["store_days"] = batch
    rng = random.Random(f"{name}-{scale}-{seed}")
    return BUILDERS[name](sc, rng)


def main():
    ap = argparse.ArgumentParser(description="write the benchmark workflows as JSON")
    ap.add_argument("--scale", default="small", choices=list(SCALES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, a.scale), exist_ok=True)
    for n in NAMES:
        w = build(n, a.scale, a.seed)
        path = os.path.join(a.out, a.scale, f"{n}.json")
        with open(path, "w") as f:
            json.dump(w.workflow, f, indent=2)
            f.write("\n")
        print(f"{path}: {len(w.jobs)} jobs, {w.n_llm_ops(w.jobs[0])} LLM calls per job; {w.notes}")


if __name__ == "__main__":
    main()
