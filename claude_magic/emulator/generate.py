"""Deterministic replies: the text a request gets, cut by ``max_tokens`` and ``stop_sequences``.

The full answer ``F`` of a conversation that ends with a user turn is a function of the model, the
system prompt and the text of the turns only (``cache_control`` marks, ``max_tokens`` and
``stop_sequences`` do not change it; they only cut it). Special prompts, for demo notebooks:

- a line ``Reply with exactly: SOMETHING`` in the last user turn -> ``SOMETHING``;
- a line ``Answer with one of: a, b, c`` -> exactly one option (sentiment keywords pick
  positive/negative/neutral-like options, an option named in the text wins, else a hash picks).

A conversation with images or documents (``shown``: a label per block, from :mod:`.attachments`)
gets an answer that starts with their labels, in order (``[image 640x480 png] [document pdf 3
pages]``), then a blank line and the usual text; a special prompt's answer stays exact. The labels
are part of ``F``, so prefill and follow-up resumption work across them.

Stream resumption (the emulated model continues what it was saying):

- prefill: a final assistant turn ``P`` where ``F`` (the answer without that turn) starts with ``P``
  -> the reply is ``F[len(P):]`` (so ``P + reply == F``, whitespace the client stripped included);
- follow-up: ``[..., user U, assistant A, user C]`` where ``C`` contains the word "continue" and
  ``F`` (the answer to the conversation up to ``U``) starts with ``A`` (or ``A.rstrip()``) -> the
  reply is ``F`` from the end of ``A``, repeating first up to ``continue_overlap`` characters of ``A``
  (starting at a word start inside that window when there is one), as a model that repeats itself
  a little would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import tokens

WORDS = (
    "the a model answer data signal each small clear careful quick result table column value "
    "because therefore however which while notebook cell stream token cache prompt request "
    "reply question method simple strong gentle bright river mountain garden window library "
    "system number pattern example detail summary review product customer price quality "
    "simply mostly often rarely always never also still only just even well here there "
    "shows keeps brings makes finds takes gives holds turns reads writes builds checks"
).split()
CJK = ("数据", "模型", "你好", "世界", "分析", "結果", "東京", "こんにちは", "ありがとう", "안녕하세요",
       "学习")
EMOJI = ("🙂", "🚀", "✨", "📊", "🎉", "🌍", "👍🏽", "👩‍💻", "🧪", "☕")
THINK_WORDS = (
    "let me think about what the user wants first then check the facts and plan a short clear answer "
    "consider the request carefully weigh options"
).split()

_EXACT = re.compile(r"(?im)^.*?reply with exactly:[ \t]*(.+?)[ \t]*$")
_ONE_OF = re.compile(r"(?im)answer with one of:[ \t]*(.+?)[ \t]*$")  # the text before it counts too
_CONTINUE = re.compile(r"\bcontinue\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z']+")

POSITIVE_WORDS = frozenset(
    "good great love loved excellent amazing awesome happy best wonderful fantastic perfect like liked "
    "nice recommend pleased delighted superb enjoy enjoyed brilliant fast works".split()
)
NEGATIVE_WORDS = frozenset(
    "bad terrible hate hated awful worst poor broken disappointed disappointing refund slow horrible "
    "useless waste angry faulty defective never rude problem broke cheap".split()
)
POSITIVE_LABELS = frozenset({"positive", "pos", "good", "yes", "happy"})
NEGATIVE_LABELS = frozenset({"negative", "neg", "bad", "no", "unhappy"})
NEUTRAL_LABELS = frozenset({"neutral", "mixed", "none", "unknown"})


@dataclass
class Conversation:
    """A request reduced to what shapes the answer: turns merged by role, text only, and the labels
    of the images and documents each turn holds (``shown``, one tuple per turn)."""

    model: str
    system: str
    turns: list[tuple[str, str]]
    shown: list[tuple[str, ...]] = field(default_factory=list)

    def labels(self, turns: int) -> list[str]:
        """The labels of the first ``turns`` turns, in order."""
        return [label for labels in self.shown[:turns] for label in labels]


@dataclass
class Block:
    """One content block of a reply, with the pieces its deltas carry."""

    type: str                       # "thinking" | "text" | "tool_use"
    pieces: list[str] = field(default_factory=list)
    signature: str = ""
    omitted: bool = False           # thinking display "omitted": no thinking_delta, empty text
    tool: dict | None = None        # {"id", "name", "input"} for tool_use

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def content(self) -> dict:
        if self.type == "thinking":
            return {"type": "thinking", "thinking": "" if self.omitted else self.text,
                    "signature": self.signature}
        if self.type == "tool_use":
            assert self.tool is not None
            return {"type": "tool_use", **self.tool}
        return {"type": "text", "text": self.text}


@dataclass
class Plan:
    blocks: list[Block]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    stop_details: dict | None = None    # {"type": "refusal", ...} with stop_reason "refusal"


# -- conversation text ------------------------------------------------------------------------------

def content_text(content: Any) -> str:
    """The text of a message's content (string or blocks); thinking is left out."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(_block_text(b) for b in content if isinstance(b, dict))


def _block_text(block: dict) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("thinking", "redacted_thinking"):
        return ""
    if kind == "tool_result":
        return "[tool_result] " + content_text(block.get("content", ""))
    if kind == "tool_use":
        return "[tool_use] " + json.dumps({"name": block.get("name"), "input": block.get("input")},
                                          sort_keys=True, ensure_ascii=False)
    return f"[{kind}]"


def system_text(system: Any) -> str:
    return content_text(system) if system is not None else ""


def conversation(body: dict, shown: Mapping[tuple[int, int], str] | None = None) -> Conversation:
    """``shown``: the label of each image or document block by (message, block) index."""
    turns: list[tuple[str, str]] = []
    labels: list[tuple[str, ...]] = []
    by_message: dict[int, list[str]] = {}
    for (m, _), label in sorted((shown or {}).items()):
        by_message.setdefault(m, []).append(label)
    for i, message in enumerate(body.get("messages") or []):
        role, text = message.get("role"), content_text(message.get("content"))
        mine = tuple(by_message.get(i, ()))
        if turns and turns[-1][0] == role:  # the API merges consecutive same-role turns
            turns[-1] = (role, turns[-1][1] + "\n\n" + text)
            labels[-1] += mine
        else:
            turns.append((role, text))
            labels.append(mine)
    return Conversation(str(body.get("model")), system_text(body.get("system")), turns, labels)


def seeded(*parts: Any) -> random.Random:
    """A random generator seeded by a hash of ``parts`` (JSON-serialisable): the same parts, the
    same sequence, in every process."""
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


# -- the full answer --------------------------------------------------------------------------------

def compose(rng: random.Random, n_tokens: int, *, words: tuple[str, ...] | list[str] = WORDS,
            mixed: bool = True) -> str:
    """Sentences of about ``n_tokens`` tokens mixing Latin words, some CJK and some emoji."""
    parts: list[str] = []
    total = 0
    while total < n_tokens:
        sentence = [rng.choice(words) for _ in range(rng.randint(5, 12))]
        if mixed and rng.random() < 0.35:
            sentence.insert(rng.randrange(len(sentence)), rng.choice(CJK))
        text = " ".join(sentence)
        text = text[0].upper() + text[1:] + "."
        if mixed and rng.random() < 0.3:
            text += " " + rng.choice(EMOJI)
        if parts:
            text = ("\n\n" if rng.random() < 0.2 else " ") + text
        parts.append(text)
        total += tokens.count(text)
    return "".join(parts)


def special_answer(user_text: str) -> str | None:
    """The exact answer a demo prompt asks for, or None."""
    match = _EXACT.search(user_text)
    if match:
        return match.group(1)
    match = _ONE_OF.search(user_text)
    if match:
        options = [o.strip().strip("\"'`.").strip() for o in re.split(r",|\bor\b", match.group(1))]
        options = [o for o in options if o]
        if options:
            rest = user_text[: match.start()] + user_text[match.end():]
            return pick_option(options, rest)
    return None


def pick_option(options: list[str], text: str) -> str:
    """One of ``options`` for ``text``: by sentiment for sentiment-like labels, else the option the
    text names, else one picked by a hash of both."""
    words = _WORD.findall(text.lower())
    score = sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
    by_kind = {"pos": POSITIVE_LABELS, "neg": NEGATIVE_LABELS, "neu": NEUTRAL_LABELS}
    labelled = {kind: next((o for o in options if o.lower() in labels), None)
                for kind, labels in by_kind.items()}
    if any(labelled.values()):
        kind = "pos" if score > 0 else "neg" if score < 0 else "neu"
        if labelled[kind]:
            return str(labelled[kind])
    lowered = text.lower()
    for option in options:
        if re.search(r"\b" + re.escape(option.lower()) + r"\b", lowered):
            return option
    return options[seeded("option", options, text).randrange(len(options))]


def full_answer(model: str, system: str, turns: list[tuple[str, str]], shown: Sequence[str] = ()) -> str:
    """``F``: the whole answer to a conversation that ends with a user turn; ``shown``: the labels of
    its images and documents, which start the answer (a special prompt's answer stays exact)."""
    last_user = turns[-1][1] if turns and turns[-1][0] == "user" else ""
    special = special_answer(last_user)
    if special is not None:
        return special
    rng = seeded("answer", model, system, turns)
    text = compose(rng, rng.randint(20, 120))
    return " ".join(shown) + "\n\n" + text if shown else text


def answer(conv: Conversation, continue_overlap: int) -> str:
    """The text this request gets before cuts, resuming as the module docstring says."""
    turns = conv.turns
    if turns and turns[-1][0] == "assistant":
        prefill = turns[-1][1]
        whole = full_answer(conv.model, conv.system, turns[:-1], conv.labels(len(turns) - 1))
        if whole.startswith(prefill):
            return whole[len(prefill):]
        rng = seeded("prefill", conv.model, conv.system, turns)
        return compose(rng, rng.randint(20, 120))
    if (len(turns) >= 3 and turns[-2][0] == "assistant" and turns[-3][0] == "user"
            and _CONTINUE.search(turns[-1][1])):
        said = turns[-2][1]
        whole = full_answer(conv.model, conv.system, turns[:-2], conv.labels(len(turns) - 2))
        for end in (len(said), len(said.rstrip())):
            if end and whole.startswith(said[:end]):
                return whole[overlap_start(whole, end, continue_overlap):]
    return full_answer(conv.model, conv.system, turns, conv.labels(len(turns)))


def overlap_start(text: str, end: int, overlap: int) -> int:
    """Where a continuation that repeats up to ``overlap`` characters before ``end`` begins."""
    if overlap <= 0:
        return end
    low = max(0, end - overlap)
    for i in range(low, end):
        if not text[i].isspace() and (i == 0 or text[i - 1].isspace()):
            return i
    return low


def thinking_text(conv: Conversation) -> str:
    rng = seeded("thinking", conv.model, conv.system, conv.turns)
    return "Let me think. " + compose(rng, rng.randint(10, 30), words=THINK_WORDS, mixed=False)


def signature(text: str) -> str:
    return "Eu" + base64.b64encode(hashlib.sha256(text.encode()).digest() * 2).decode()


# -- tools ------------------------------------------------------------------------------------------

def pick_tool(body: dict, conv: Conversation) -> dict | None:
    """The tool the emulated model calls, or None: forced by tool_choice, or named by the user."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t["name"] == choice.get("name")), None)
    if choice.get("type") == "any":
        return tools[0]
    last = conv.turns[-1][1] if conv.turns and conv.turns[-1][0] == "user" else ""
    if last.startswith("[tool_result]"):
        return None
    return next((t for t in tools if re.search(r"\b" + re.escape(t["name"]) + r"\b", last)), None)


def tool_input(schema: Any, rng: random.Random) -> Any:
    """A value that fits a JSON schema well enough for demos."""
    if not isinstance(schema, dict):
        return {}
    kind = schema.get("type")
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        return {name: tool_input(sub, rng) for name, sub in props.items()} if isinstance(props, dict) else {}
    if kind == "array":
        return [tool_input(schema.get("items") or {"type": "string"}, rng)]
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))


# -- the reply --------------------------------------------------------------------------------------

def split_pieces(text: str, rng: random.Random) -> list[str]:
    """Delta payloads of 1-3 tokens each."""
    toks = tokens.tokenize(text)
    pieces, i = [], 0
    while i < len(toks):
        n = rng.randint(1, 3)
        pieces.append("".join(toks[i:i + n]))
        i += n
    return pieces


def _stop_at(text: str, stop_sequences: list[str]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for seq in stop_sequences:
        if not seq:
            continue
        pos = text.find(seq)
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, seq)
    return best


def thinks(body: dict, always: bool) -> bool:
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    return always or kind in ("enabled", "adaptive")


def plan_reply(body: dict, *, always_thinks: bool, continue_overlap: int, text: str | None = None,
               shown: Mapping[tuple[int, int], str] | None = None) -> Plan:
    """The blocks, stop reason and output tokens of a validated Messages request.

    ``text``: the answer to give instead of the free-text one (a structured output's JSON); it is
    cut by ``max_tokens`` and ``stop_sequences`` like any answer. ``shown``: the labels of the
    request's images and documents by (message, block) index.
    """
    conv = conversation(body, shown)
    max_tokens = int(body["max_tokens"])
    rng = seeded("deltas", conv.model, conv.system, conv.turns, max_tokens)
    blocks: list[Block] = []
    budget = max_tokens
    if thinks(body, always_thinks) and budget > 0:
        display = (body.get("thinking") or {}).get("display")
        thought = tokens.cut(thinking_text(conv), budget)
        budget -= tokens.count(thought)
        blocks.append(Block("thinking", split_pieces(thought, rng), signature(thought),
                            omitted=display == "omitted"))
        if budget <= 0:
            return Plan(blocks, "max_tokens", None, max_tokens)
    tool = pick_tool(body, conv)
    if tool is not None and budget > 0:
        args = tool_input(tool.get("input_schema"), seeded("tool", conv.model, conv.turns, tool["name"]))
        call = {"id": "toolu_" + hashlib.sha256(repr((conv.turns, tool["name"])).encode()).hexdigest()[:24],
                "name": tool["name"], "input": args}
        raw = json.dumps(args, ensure_ascii=False)
        pieces = [""] + [raw[i:i + 7] for i in range(0, len(raw), 7)]  # splits mid-token on purpose
        blocks.append(Block("tool_use", pieces, tool=call))
        return Plan(blocks, "tool_use", None, max_tokens - budget + tokens.count(raw))
    if text is None:
        text = answer(conv, continue_overlap)
    return _text_plan(blocks, text, body, budget, max_tokens, rng)


def _text_plan(blocks: list[Block], text: str, body: dict, budget: int, max_tokens: int,
               rng: random.Random) -> Plan:
    stop_reason, matched = "end_turn", None
    hit = _stop_at(text, list(body.get("stop_sequences") or []))
    if hit is not None:
        text, matched, stop_reason = text[: hit[0]], hit[1], "stop_sequence"
    if tokens.count(text) > budget:
        text, matched, stop_reason = tokens.cut(text, budget), None, "max_tokens"
    if text:
        blocks.append(Block("text", split_pieces(text, rng)))
    used = max_tokens - budget + tokens.count(text)
    return Plan(blocks, stop_reason, matched, max(used, 1) if max_tokens > 0 else 0)
