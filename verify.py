"""Rule verifier: extract a final answer from model text and decide if it equals the reference.

    extract_answer("13+5=18\\n#### 18")                       -> "18"
    verify("so the answer is \\boxed{\\frac{1}{2}}", "0.5")    -> True
    verify("... $x = 1 \\pm \\sqrt{2}$ ... \\boxed{1\\pm\\sqrt2}", "1+\\sqrt{2}, 1-\\sqrt{2}") -> True

verify(completion, reference, question=None, last_number=False, timeout=TIMEOUT_S) -> bool
    The reference may be a bare answer or a worked solution: its final answer is found the same way.
    Extraction, after a closing </think> if anything follows it, and with JSON-doubled backslashes undone:
    the last \\boxed{}/\\fbox{} (boxes side by side are one list), unless a later "final answer is ..."
    overrides it; else the text after the last "####", "final answer is", "answer is", "Answer:", "Answer $x$"
    or a line-start "A:" (a sentence there gives the value it states: "The largest $n$ is 34."); else a
    line of math alone; else the last $..$ / \\[..\\] span; else a concluding sentence ("Therefore, ... is
    2/3."); else a short one-line completion; else, only with last_number=True, the last number.

Equivalence policies (cheapest test first; each row is tested in test_verify.py):
    | policy                  | equal                                 | not equal                        |
    |-------------------------|---------------------------------------|----------------------------------|
    | normalised string       | \\text{Evelyn} ~ evelyn, \\dfrac ~ \\frac | Evelyn ~ Carla                   |
    | thousands separators    | 1,000 ~ 1000, 14{,}916 ~ 14916, 32,\\! 349 ~ 32349 | 32, 349 ~ 32349 (a list) |
    | decimal comma           | 1,22 ~ 1.22, 0,111 ~ 0.111             | 1,2 ~ 1.2 (a list), 1,222 ~ 1.222 |
    | decoration              | $18 ~ 18, 90^\\circ ~ 90, \\frac12\\text{ m} ~ 0.5 |                          |
    | numbers: exact          | 12.0 ~ 12, 0.5 ~ \\frac12 ~ 1/2         | 1000001 ~ 1000000, 2^{-99} ~ 2^{-98} |
    | rounded decimals        | 0.0833333 ~ \\frac1{12} (6+ places, last place) | 0.33 ~ \\frac13, 3.14 ~ \\pi |
    | percent                 | 28\\% ~ 28, 10\\% ~ 0.1                  | 0.28 ~ 28                        |
    | labelled answers        | x = 3 ~ 3, (p, q) = (3, 2) ~ (3, 2)    | 2x + z = 1 ~ 1; x = 3 ~ y = 3    |
    |                         | AB = 4, CD = 5 ~ (4, 5); x \\in [0, 1) ~ [0, 1); x \\approx 11 ~ 11 |           |
    | equations               | a=b ~ b=a, 2x=4 ~ x=2 (constant ratio) | 3x-y=0 ~ 3x+4y=0                 |
    | inequalities            | x < 1 ~ -x > -1, x>=5 ~ 5 \\le x       | x < 1 ~ x > -1                   |
    | ... as intervals        | -1 < a < 10 ~ (-1, 10), x > 5 ~ (5, \\infty) | -1 \\le a < 10 ~ (-1, 10)  |
    | expressions (sympy)     | \\sec^2 y ~ \\tan^2 y + 1, \\sqrt8 ~ 2\\sqrt2 | 4\\sqrt(2) ~ 4 (read as 4*sqrt 2) |
    | bare lists, sets, \\pm   | unordered, ; as ,: 1; 2 ~ 2, 1; 1\\pm 2 ~ 3, -1; repeats once | 1, 2, 3 ~ 1, 2 |
    | tuples, matrices        | ordered: (1, 4.5) ~ (1, \\frac92)      | (1, 2) ~ (2, 1)                  |
    | intervals, unions       | [0, 1) ~ [0, 1); union order free      | (0, 9) ~ [0, 9)                  |
    | multiple choice         | (B) ~ B; "15" ~ B if question has (B) 15 | (A) ~ B                        |
    | yes / no, proofs        | Yes ~ True ~ correct, proved ~ proven  | Yes ~ No, proved ~ disproved     |
    | unparseable             | only string equality                   | anything else                    |

Safety. Model text is untrusted: nothing here calls eval, exec, sympify or parse_expr. A small
recursive-descent parser (_Parser) turns LaTeX / plain math into sympy objects directly, refusing
answers over MAX_ANSWER_CHARS, nesting over MAX_DEPTH, integer powers over MAX_POW_BITS and factorials
over MAX_FACTORIAL. Texts over MAX_TEXT_CHARS are refused outright.

Time limit. The string and number paths run in the caller's process and are linear in the input
(bounded scans, no backtracking-prone regexes on long text). Everything that touches sympy runs in a
persistent worker process (python verify.py --serve), one per concurrent caller, reused across calls.
The caller waits on the worker's pipe with select(); if no answer comes within `timeout` seconds the
worker is killed (SIGKILL always works, from any thread, in any process, unlike signal.alarm or a
cooperative deadline that a long C-level sympy call would never check), the call returns False and
stats["timeouts"] counts it. Starting a worker (importing sympy) is not counted; call
warm_up() first if the first call must also be fast.
"""
import json, os, random, re, select, subprocess, sys, threading, time
from fractions import Fraction

TIMEOUT_S = 1.0
MAX_TEXT_CHARS, MAX_ANSWER_CHARS = 1_000_000, 2_000
MAX_DEPTH, MAX_POW_BITS, MAX_EXPONENT, MAX_FACTORIAL = 100, 100_000, 10_000, 5_000
EXACT_TOL = 1e-15  # relative: what 30-digit evaluation of two equal exact values may differ by
stats = {"timeouts": 0, "sympy_calls": 0}  # module-level counters for callers to read (or reset)

# ---------------------------------------------------------------- extraction

_BRACE = re.compile(r"[{}]")
_MARKER = re.compile(r"####|final answer(?: is)?|answer is|answer\s*:|^[ \t*]*a:|(?:option|choice) is|"
                     r"\banswer(?=[ \t]*(?:\$|\\[\[(]|-?\d))|^[ \t*#]*answer\b", re.I | re.M)
# JSON-escaped text doubles every backslash; a doubled one before a command name is that command
_DOUBLED = re.compile(r"(?<!\\)\\\\(?=(?:[dtc]?frac|sqrt|boxed|left|right|pi|text\w*|math\w+|cdot|times|infty|"
                      r"leq?|geq?|neq?|pm|mp|cup|cap|in|approx|circ|sin|cos|tan|log|ln|exp|theta|alpha|beta|begin|"
                      r"end|quad|[lc]?dots|lt|gt|mbox|operatorname)(?![a-zA-Z]))")
_GLUE = re.compile(r"(?:\s|\$|\\[\[\]()]|\\q?quad|\\[,;!]|\\text\{\s*(?:and|or|,)?\s*\}|,|;|\band\b|\bor\b)*")
_JOIN = re.compile(r"\s*(?:,|;|\band\b|\bor\b|\\text\{\s*(?:and|or)\s*\})\s*")
_SPAN = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$([^$\n]+?)\$", re.S)
_CONCLUDE = re.compile(r"(?:^\s*(?:therefore|thus|so|hence|finally)|\b(?:Therefore|Thus|So|Hence|Finally))\b")
_NUM_WORD = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?\s*%?")


def _braced(text, j):
    """Content of the {...} group opening at text[j]; None if unbalanced within MAX_ANSWER_CHARS."""
    depth = 0
    for m in _BRACE.finditer(text, j, min(len(text), j + MAX_ANSWER_CHARS + 2)):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return text[j + 1:m.start()]
    return None


def _last_boxed(text):
    """(inside, end) of the last well-formed \\boxed{...} / \\fbox{...}, trying at most 8 from the end. Boxes
    written side by side ('\\boxed{-2} and \\boxed{1}') are one answer: their insides joined as a list."""
    found = []
    for m in list(re.finditer(r"\\(?:boxed|fbox)\s*(?=\{)", text))[-8:][::-1]:
        inside = _braced(text, m.end())
        if inside is None:
            continue
        end = m.end() + len(inside) + 2
        if found and not _GLUE.fullmatch(text, end, found[-1][1]):
            break
        found.append((inside, m.start(), end))
    return (", ".join(f[0] for f in reversed(found)), found[0][2]) if found else (None, 0)


def _span(rest):
    """The $..$ / \\[..\\] / \\(..\\) span opening rest, with up to 8 spans joined to it by 'and' / ',' (one
    list); None if it opens none."""
    found, pos = [], 0
    while len(found) < 8:
        opener, closer = next(((o, c) for o, c in (("$$", "$$"), ("\\[", "\\]"), ("$", "$"), ("\\(", "\\)"))
                               if rest.startswith(o, pos)), (None, None))
        m = opener and re.compile(r"(?<!\\)" + re.escape(closer)).search(rest, pos + len(opener))  # \$: a dollar
        if not m or opener in ("$", "\\(") and "\n" in rest[pos:m.start()]:  # inline math is one line
            break  # and an unmatched $ is a currency sign
        found.append(rest[pos + len(opener):m.start()])
        join = _JOIN.match(rest, m.end())
        if not join:
            break
        pos = join.end()
    return ", ".join(found) if found else None


def _from_sentence(s):
    """The answer inside a sentence: 'The largest $n$ is 34' -> '34', 'Jane started 3 hours ago' -> '3'."""
    parts = re.split(r"\s(?:is|are|was|equals|be)\s|=", s)
    spans = [next(g for g in m.groups() if g is not None) for m in _SPAN.finditer(parts[-1])]
    nums = _NUM_WORD.findall(parts[-1])
    if len(parts) > 1:  # after the verb: its first math span, else its first number
        return spans[0] if spans else nums[0] if nums else None
    return nums[0] if len(nums) == 1 else spans[0] if len(spans) == 1 else None


def _after_marker(text, start=0):
    """What follows the last answer marker: a $..$ / \\[..\\] span, else the line up to a full stop."""
    last = None
    for last in _MARKER.finditer(text, start):
        pass
    if last is None:
        return None
    rest = text[last.end():last.end() + 4 * MAX_ANSWER_CHARS].lstrip(" \t:*").lstrip()
    rest = rest[1:] if rest.startswith(('"', "“", "'")) else rest  # 'The final answer is "$12$ and $13$".'
    ans = _span(rest)
    if ans is None:
        ans = re.split(r"[\"”']?\.(?=\s|\*|$)", rest.split("\n", 1)[0], maxsplit=1)[0]
        if len(ans.split()) >= 3 and _is_text(re.sub(r"\$[^$]*\$", "", ans)):
            ans = _from_sentence(ans) or ans  # 'Final Answer: The largest $n$ is 34.'
    return ans


def _unmarked(text):
    """An answer no marker announces: the last math span (with spans glued to it: '$12$ and $13$'), else what a
    concluding sentence states ('Therefore, ... is 2/3.')."""
    end = text[-MAX_ANSWER_CHARS:]  # bounded: a lazy span scan is quadratic
    spans = list(_SPAN.finditer(end))
    if spans and not re.search(r"\d", end[spans[-1].end():]):  # 'the largest $n$ is 34': not n
        k = len(spans) - 1
        while k and _JOIN.fullmatch(end, spans[k - 1].end(), spans[k].start()):
            k -= 1
        inside = ", ".join(next(g for g in m.groups() if g is not None) for m in spans[k:])
        if not _is_text(inside):
            return inside
    for sentence in reversed(re.split(r"(?<=[.!?])\s+|\n", text[-4 * MAX_ANSWER_CHARS:].strip())[-3:]):
        found = list(_CONCLUDE.finditer(sentence))  # capitalised, or opening the sentence
        if found:
            return _from_sentence(sentence[found[-1].end():].rstrip("."))
    return None


def extract_answer(text, last_number=False):
    """Final answer string of a completion or worked solution, or None (see the module docstring)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        return None
    text = _DOUBLED.sub(lambda m: "\\", text) if "\\\\" in text else text
    _, think, tail = text.rpartition("</think>")
    thought = bool(think and tail.strip())
    text = tail if thought else text  # a reasoning model's answer follows its thinking
    ans, end = _last_boxed(text)
    later = _after_marker(text, end)  # after the last box, or anywhere when there is none
    if ans is None or later and re.search(r"[\d$\\]", later):  # '\boxed{200} ... The final answer is $10,455$'
        ans = later
    lines = text.strip().split("\n")
    alone = "\\boxed" not in text and (len(lines) == 1 or thought) and len(lines[-1]) <= MAX_ANSWER_CHARS
    line = lines[-1] if alone else ""  # a longer line is no answer, and not worth a scan
    if ans is None and line and not _is_text(line) and not _SPAN.search(line):
        ans = line  # a one-line completion (or last line after thinking) of math alone is its own answer
    if ans is None:
        ans = _unmarked(text)
    if ans is None and 0 < len(line) <= 40:
        ans = line  # and so is a short one
    if ans is None and last_number:
        ans = (re.findall(r"-?\d[\d,]*(?:\.\d+)?", text[-MAX_ANSWER_CHARS:]) or [None])[-1]
    return _clean(ans) or None if ans is not None and len(ans) <= MAX_ANSWER_CHARS else None

# ---------------------------------------------------------------- normalisation, numbers, text

_UNWRAP = re.compile(r"\\(?:text|textbf|textit|textnormal|mathrm|mathbf|mbox|operatorname|boxed)\s*\{([^{}]*)\}")
_DROP = re.compile(r"(?<!\\)\\(?:left|right|displaystyle|[,;:! ]|quad|qquad)|\^\s*\{?\\circ\}?|°|\\circ|\\\$|\*\*|\$")
_UNITS = re.compile(r"^(.*?\d)\s*(?:[a-zA-Z\u00b2\u00b3]{2,}(?:\^\d)?\.?(?:\s+|$))+$")  # words split only at spaces: no backtracking blow-up
_UNICODE = str.maketrans({"−": "-", "×": "*", "·": "*", "÷": "/", "π": "\\pi ", "∞": "\\infty ", "≤": "\\le ",
                          "≥": "\\ge ", "≠": "\\ne ", "√": "\\sqrt", "∪": "\\cup ", "€": ""})
_TEXT_UNIT = re.compile(r"(?<=[\d}])(?:\s|\\[,;: !])*\\(?:text|mathrm|mbox|textnormal|textbf)\s*"
                        r"\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?\d\}?)?$")
_PERIOD = re.compile(r"[,;]?\s*\(?\s*(?:where|for)?\s*[a-z]\s*\\in\s*\\mathbb\s*\{?[ZN]\}?\s*\)?$")  # k \in \mathbb{Z}


def _clean(s):
    """Drop what never changes the value: $, \\(, \\text{}, \\left, spacing, degrees, units, a full stop."""
    s = re.sub(r"(?:\.\.\.|…)\s*\$?$", r" \\ldots", s.translate(_UNICODE).strip())  # '1, 2, ...' is not '1, 2'
    s = _TEXT_UNIT.sub("", s.strip("$").strip().rstrip(".").rstrip())  # '\frac12 \text{ m}': a unit
    for _ in range(8):
        s, n = _UNWRAP.subn(r"\1", s)
        if not n:
            break
    s = re.sub(r"\s*\{,\s*\}\s*|,\\!\s*", ",", s)  # 14{,}916 and 32,\! 349 are thousands separators
    s = _DROP.sub("", s).replace("\\%", "%")
    s = re.sub(r"\\[dtc]frac", r"\\frac", re.sub(r"\\[\[\]()]", "", s)).strip().rstrip(".,;").strip()
    s = re.sub(r"(?<=[\d})\]])\s*(?:or|and)\s*(?=[-\d(\[\\]|[a-z]\s*=)", ", ", s)  # '2\text{or}3' unwraps to '2or3'
    s = re.sub(r",?\s+(?:and|or)\s+", ", ", re.sub(r",?\s+(?:percent(?:age)?|pct)$", "%", s)).replace(";", ",")
    s = _PERIOD.sub("", _approx(s))
    m = _UNITS.match(s)
    return re.sub(r"\s+", " ", m.group(1) if m and not _is_text(m.group(1)) else s).strip()


def _approx(s):
    """'x \\approx 11' -> 'x = 11', '\\approx 7.78' -> '7.78', '1/3 \\approx 0.33' -> '1/3' (the exact value)."""
    head, sep, rest = s.partition("\\approx")
    head = head.strip()
    return s if not sep else rest if not head else f"{head} = {rest}" if re.fullmatch(_NAME, head) else head


_NAME = r"(?:[a-zA-Z](?:_\{?\w+\}?)?|[A-Z]{2,3}|\|[A-Z]{1,3}\||[a-zA-Z]\([^()=,]*\)|\\angle\s*[A-Z]{1,3})"
_LABEL = re.compile(rf"(?:{_NAME}|\(\s*{_NAME}(?:\s*,\s*{_NAME})+\s*\))\s*(?:=|\\in\b)(?:.*=)?\s*([^=<>]+)")


def _top_split(s):
    """s split at the commas outside brackets and numbers: 'AB = 4, (1, 2)' -> ['AB = 4', '(1, 2)']."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if c == "," and depth == 0 and not (s[i - 1:i].isdigit() and re.match(r"\d{3}(?!\d)", s[i + 1:i + 5])):
            parts, start = parts + [s[start:i]], i + 1
    return parts + [s[start:]]


def _drop_label(s):
    """'x = 3' -> '3', 'x = 5+5+1 = 11' -> '11', '(p, q) = (3, 2)' -> '(3, 2)', 'AB = 4, CD = 5' -> '(4, 5)',
    'x \\in [0, 1)' -> '[0, 1)'; unchanged unless its first member is labelled."""
    parts = _top_split(s) if "," in s and len(s) < MAX_ANSWER_CHARS else [s]
    found = [_LABEL.fullmatch(p.strip()) for p in parts]
    if not found[0]:
        return s
    values = ", ".join((m.group(1) if m else p).strip() for p, m in zip(parts, found))
    return f"({values})" if sum(map(bool, found)) > 1 else values  # AB = 4, CD = 5: in that order


_FRAC = re.compile(r"(-?)\\frac(?:\{(\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}|(\d)(\d))")
# a mantissa with at least one digit: "e4" alone is not a number (Fraction("e4") raises)
_PLAIN = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d{1,3})?")
# a decimal comma: not three digits after it (a thousands separator) nor one ('1,2' is a list), or after a 0
_DECIMAL_COMMA = re.compile(r"-?(?:\d+,(?:\d\d|\d{4,})|0,\d+)")


def _number(s):
    """Exact value of a plain number: '1,000', '-12.0', '3/4', '\\frac{3}{4}', '\\frac34', '2\\frac12', '1e-3'."""
    m = re.fullmatch(r"\s*(-?)(\d+)\s+(\d+)/(\d+)\s*", s) if len(s) < 100 else None  # mixed number 4 4/9
    if m and int(m.group(4)):
        return (-1 if m.group(1) else 1) * (int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4))))
    s = re.sub(r"(?<!,)\s+", "", s)  # but '32, 349' keeps its space: it is a list
    m = re.fullmatch(r"(-?)(\d+)(\\frac.*)", s) if len(s) < 100 else None  # mixed number
    if m and _FRAC.fullmatch(m.group(3)):
        return (-1 if m.group(1) else 1) * (int(m.group(2)) + _number(m.group(3)))
    m = _FRAC.fullmatch(s) if len(s) < 100 else None
    if m:
        num, den = Fraction(m.group(2) or m.group(4)), Fraction(m.group(3) or m.group(5))
        return (-num if m.group(1) else num) / den if den else None
    if s.count("/") == 1:
        a, b = (_number(x) for x in s.split("/"))
        return a / b if a is not None and b else None
    if len(s) < 100 and _DECIMAL_COMMA.fullmatch(s):
        return Fraction(s.replace(",", "."))
    return Fraction(s.replace(",", "")) if len(s) < 100 and _PLAIN.fullmatch(s) else None


def _places(s):
    """Most digits after a decimal point in s: how finely a rounded value in it was written."""
    return max((len(d) for d in re.findall(r"\.(\d+)", s[:MAX_ANSWER_CHARS])), default=0)


def _terminating(q):
    """Some decimal writes the Fraction q exactly: its denominator (2^a 5^b) divides a power of 10."""
    return 10 ** q.denominator.bit_length() % q.denominator == 0


def _near(a, b, places):
    """Exact rationals a, b are the same answer. Integers and exactly-written decimals compare exactly; a
    decimal of 6+ places also stands for a value no decimal writes (1/12 ~ 0.0833333), within its last place."""
    if a == b or places < 6 or _terminating(a) and _terminating(b):
        return a == b
    return abs(a - b) <= Fraction(1, 10 ** places)


def _numbers_equal(pred, ref):
    """True/False when both are plain numbers, else None. A % on either side also allows value/100."""
    a, b = _number(pred.rstrip("%").rstrip("\\")), _number(ref.rstrip("%").rstrip("\\"))
    if a is None or b is None:
        return None
    n = max(_places(pred), _places(ref))
    return (_near(a, b, n) or pred.endswith("%") and _near(a / 100, b, n)
            or ref.endswith("%") and _near(a, b / 100, n))


_SYNONYMS = [{"yes", "true", "correct"}, {"no", "false", "incorrect"}, {"proved", "proven", "provable"},
             {"disproved", "disproven", "refuted"}]
_MATH_WORDS = set("sin cos tan sec csc cot sinh cosh tanh arcsin arccos arctan log exp sqrt frac infty cdot times "
                  "cup leq geq neq approx begin end pmatrix bmatrix matrix array binom emptyset varnothing div "
                  "theta alpha beta gamma delta lambda sigma omega phi rho tau epsilon circ".split())


def _is_text(s):
    return any(w.lower() not in _MATH_WORDS for w in re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}", s))


def _choice(s):
    """('B', '15') for '(B) 15', 'B) 15', 'B.'; ('B', '') for 'B', '(B)' or 'Option B'; None otherwise."""
    m = re.fullmatch(r"(?:[Oo]ption\s*|[Cc]hoice\s*)?(?:\(([A-E])\)\s*(.*)|([A-E])(?:[.:)]\s*(.*))?)", s, re.S)
    return (m.group(1) or m.group(3), (m.group(2) or m.group(4) or "").strip()) if m else None


def _options(question):
    """{'A': '12', ...} from '(A) 12 (B) 15' or line-start 'A. 12' / 'A) 12' in the question."""
    found = re.findall(r"(?:^|\s)\(?([A-E])[).:]\s*(.+?)(?=\s+\(?[A-E][).:]\s|\n|$)", question or "", re.M)
    return {k: _clean(v) for k, v in found}

# ---------------------------------------------------------------- verify


def verify(completion, reference, question=None, last_number=False, timeout=TIMEOUT_S):
    """True when the completion's final answer equals the reference's. Never raises; False on timeout."""
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = format(reference, ".15g") if isinstance(reference, float) else repr(reference)  # 51.0; a
        # float's last digits are binary noise (0.1 + 0.2), and numbers now compare exactly
    pred = extract_answer(completion, last_number=last_number)
    ref = extract_answer(reference) if isinstance(reference, str) else None
    if ref is None and isinstance(reference, str) and len(reference) <= MAX_ANSWER_CHARS:
        ref = _clean(reference)
    return bool(pred and ref) and _equal(pred, ref, _options(question) if question else {}, timeout)


def _equal(pred, ref, options, timeout):
    key = lambda s: re.sub(r"\s+", "", s).lower()
    if key(pred) == key(ref):
        return True
    cp, cr = _choice(pred), _choice(ref)
    if cp and cr:
        return cp[0] == cr[0]
    if cp or cr:  # a letter on one side: compare the other side with the letter's option text
        (letter, text), other = (cr, pred) if cr else (cp, ref)
        return any(_equal(other, t, {}, timeout) for t in (text, options.get(letter)) if t)
    first = lambda t: re.split(r"[\s,.;:!]", t.strip().lower(), maxsplit=1)[0]  # 'Yes, it is possible.'
    if any(key(pred) in words and key(ref) in words or first(pred) in words and key(ref) in words
           or key(pred) in words and first(ref) in words for words in _SYNONYMS):
        return True
    if "=" not in pred or "=" not in ref:  # y = 2x + 1 ~ 2x - y + 1 = 0 is for the sympy path
        pred, ref = _drop_label(pred), _drop_label(ref)
        if key(pred) == key(ref):
            return True
    same = _numbers_equal(pred, ref)
    if same is not None:
        return same
    return not (_is_text(pred) or _is_text(ref)) and _ask_worker(pred, ref, timeout)

# ---------------------------------------------------------------- the sympy worker process

_pool, _pool_lock, _pool_pid = [], threading.Lock(), [os.getpid()]


def _readline(proc, deadline):
    """One reply line from the worker, or None if the deadline passes first (select works in any thread)."""
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            return None
        chunk = os.read(proc.stdout.fileno(), 64)
        if not chunk:
            return None
        buf += chunk
    return buf.decode().strip()


def _take_worker():
    with _pool_lock:
        if _pool_pid[0] != os.getpid():  # we are a forked child: the parent's workers are not ours
            _pool.clear()
            _pool_pid[0] = os.getpid()
        proc = _pool.pop() if _pool else None
    if proc is None or proc.poll() is not None:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        if _readline(proc, time.monotonic() + 60) != "ready":
            proc.kill()
            raise RuntimeError("verify.py: the sympy worker did not start (is sympy installed?)")
    return proc


def warm_up(workers=1):
    """Start workers now (one per thread that will call verify at once) so that no call waits for one."""
    procs = [_take_worker() for _ in range(workers)]
    with _pool_lock:
        _pool.extend(procs)


def _ask_worker(pred, ref, timeout):
    proc = _take_worker()
    try:
        proc.stdin.write((json.dumps([pred, ref]) + "\n").encode())
        reply = _readline(proc, time.monotonic() + timeout)
    except OSError:
        reply = None
    with _pool_lock:
        stats["sympy_calls"] += 1
        if reply is None:  # too slow (or crashed): SIGKILL always works, whatever the worker is doing
            proc.kill()
            proc.wait()
            stats["timeouts"] += 1
            return False
        _pool.append(proc)
    return reply == "1"


def _serve():
    """Worker loop: one JSON [pred, ref] per line in, '1' or '0' per line out."""
    global sp
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a runaway call dies, not the host
    except (ImportError, ValueError, OSError):
        pass
    import sympy as sp
    out, sys.stdout = os.fdopen(os.dup(1), "w"), sys.stderr  # a stray print cannot corrupt the replies
    print("ready", file=out, flush=True)
    for line in sys.stdin:
        try:
            pred, ref = json.loads(line)
            _request[0] = max(_places(pred), _places(ref))
            ok = _same(_parse(pred), _parse(ref))
        except Exception:  # _Refuse, RecursionError, MemoryError, sympy's own errors: not equal
            ok = False
        print(int(bool(ok)), file=out, flush=True)

# ---------------------------------------------------------------- parser: text -> sympy objects (worker only)

sp = None  # sympy: imported by the worker only; the caller's process never needs it
_request = [0]  # decimal places of the pair being compared (see _near)


class _Refuse(Exception):
    """Not math that we read, or too big to read safely."""


_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|((?:arc)?(?:sin|cos|tan|sec|csc|cot)h?|sqrt|log|ln|exp|pi)"
                    r"(?![a-zA-Z])|(\\[a-zA-Z]+|\\\\|\\[{}|])|(<=|>=|!=|[-+*/^_=<>(),\[\]{}|!&]|[a-zA-Z]))")
_ALIAS = {"\\le": "<=", "\\leq": "<=", "\\leqslant": "<=", "\\ge": ">=", "\\geq": ">=", "\\geqslant": ">=",
          "\\lt": "<", "\\gt": ">", "\\ne": "!=", "\\neq": "!=", "\\cdot": "*", "\\times": "*", "\\div": "/",
          "\\lbrace": "\\{", "\\rbrace": "\\}", "\\vert": "|", "\\dfrac": "\\frac", "\\tfrac": "\\frac"}
_RELS = {"=", "<", ">", "<=", ">=", "!=", "\\approx"}
_GREEK = set("alpha beta gamma delta epsilon varepsilon zeta eta theta lambda mu nu xi rho sigma tau phi varphi "
             "chi psi omega".split())
_NOT_FACTOR = {None, ")", "]", "}", "\\}", ",", "|", "&", "\\\\", "\\end", "\\cup", "\\pm", "\\mp", "^", "_",
               "!", "+", "-", "*", "/"} | _RELS


def _tokenize(s):
    toks, pos, s = [], 0, s.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise _Refuse(s[pos:pos + 10])
        num, word, cmd, op = m.groups()
        toks.append(num or ("\\" + word if word else _ALIAS.get(cmd or op, cmd or op)))
        pos = m.end()
    return toks


def _parse(s):
    """LaTeX / plain math -> a sympy Expr or ImmutableMatrix, or a tagged tuple: ("list", items) for a bare
    comma list or a \\pm pair, ("set", items), ("seq", "(", "]", items) for a tuple or interval,
    ("union", parts), ("rel", ops, members) e.g. ("rel", ["="], [x, 3])."""
    p = _Parser(s.replace("%", ""))
    v = p.top()
    if p.i != len(p.toks):
        raise _Refuse(p.toks[p.i])
    return v


def _scalar(v):
    if not isinstance(v, sp.Basic):
        raise _Refuse("not a scalar")
    return v


def _pow(base, exp):
    """base^exp, refusing any power whose value would be huge: 9^{9^{9^9}} stops here, before arithmetic."""
    base, exp = _scalar(base), _scalar(exp)
    if exp.is_number and base not in (0, 1, -1):
        e = abs(complex(sp.N(exp, 15)))
        bits = max(abs(base.p).bit_length(), base.q.bit_length()) if base.is_Rational else 1
        if e > MAX_EXPONENT or e * bits > MAX_POW_BITS:
            raise _Refuse("power too large")
    return sp.Pow(base, exp)


class _Parser:
    """top = union (',' union)* ; union = relation ('\\cup' relation)* ; relation = sum (relop sum)* ;
    sum = term (('+' | '-' | '\\pm') term)* ; term = unary (('*' | '/' | implicit) unary)* ;
    unary = ('-' | '+' | '\\pm') unary | power ; power = atom '!'* ('^' exponent)?"""

    def __init__(self, s):
        self.toks, self.i, self.depth = _tokenize(s), 0, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self):
        if self.i >= len(self.toks):
            raise _Refuse("unexpected end")
        self.i += 1
        return self.toks[self.i - 1]

    def accept(self, *ts):
        ok = self.peek() in ts
        self.i += ok
        return ok

    def expect(self, t):
        if not self.accept(t):
            raise _Refuse(f"expected {t}")

    def nested(self, f):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refuse("nested too deep")
        try:
            return f()
        finally:
            self.depth -= 1

    def top(self):
        items = [self.nested(self.union)]
        while self.accept(","):
            items.append(self.nested(self.union))
        return items[0] if len(items) == 1 else ("list", items)

    def union(self):
        parts = [self.relation()]
        while self.accept("\\cup"):
            parts.append(self.relation())
        return parts[0] if len(parts) == 1 else ("union", parts)

    def relation(self):
        members, ops = [self.sum()], []
        while self.peek() in _RELS:
            op, member = self.next(), self.sum()
            if op != "\\approx":  # "= 1/3 \approx 0.33": an approximation is not the answer
                ops.append(op)
                members.append(member)
        return ("rel", ops, members) if ops else members[0]

    def sum(self):
        v = self.term()
        while self.peek() in ("+", "-", "\\pm", "\\mp"):
            op, w, v = self.next(), _scalar(self.term()), _scalar(v)
            v = v + w if op == "+" else v - w if op == "-" else ("list", [v + w, v - w])  # a \pm b: a pair
        return v

    def term(self):
        v = self.nested(self.unary)
        while True:
            if self.peek() in ("*", "/"):
                op, w = self.next(), self.nested(self.unary)
            elif self.peek() not in _NOT_FACTOR:
                op, w = "*", self.power()  # implicit multiplication: 2x, 3\sqrt2, (a)(b)
            else:
                return v
            if isinstance(v, sp.MatrixBase) or isinstance(w, sp.MatrixBase):
                v = v * w if op == "*" else _refuse("matrix division")
            else:
                v = _scalar(v) * _scalar(w) if op == "*" else _scalar(v) / _scalar(w)

    def unary(self):
        if self.accept("-"):
            return -_scalar(self.nested(self.unary))
        if self.accept("+"):
            return self.nested(self.unary)
        if self.accept("\\pm", "\\mp"):
            v = _scalar(self.nested(self.unary))
            return ("list", [v, -v])
        return self.power()

    def power(self):
        v = self.atom()
        while self.accept("!"):
            v = _scalar(v)
            if v.is_number and not (v.is_Integer and 0 <= v <= MAX_FACTORIAL):
                raise _Refuse("factorial too large")
            v = sp.factorial(v)
        if self.accept("^"):
            return _pow(v, self.arg() if self.peek() == "{" else self.nested(self.unary))
        return v

    def arg(self):
        """A macro argument: {group}, one digit of a number (\\frac12), (a group) as in \\sqrt(2), or an atom."""
        t = self.peek()
        if t in ("{", "("):
            self.next()
            v = self.nested(self.top)
            self.expect("}" if t == "{" else ")")
            return v
        if t is not None and t[0].isdigit() and len(t) > 1:
            self.toks[self.i] = t[1:]
            return sp.Integer(int(t[0]))
        return self.atom()

    def atom(self):
        t = self.next()
        if t[0].isdigit() or t[0] == ".":
            if self.peek() == "_":
                raise _Refuse("number with a base subscript")
            return sp.Rational(Fraction(t).numerator, Fraction(t).denominator)
        if t in ("(", "["):
            v = self.nested(self.top)
            close = self.next()
            if close in (")", "]") and _kind(v) == "list":
                return ("seq", t, close, v[1])
            return v if (t, close) == ("(", ")") or _kind(v) == "matrix" else _refuse("bracket")
        if t == "{":
            v = self.nested(self.top)
            self.expect("}")
            return v
        if t == "\\{":
            if self.accept("\\}"):
                return ("set", [])
            v = self.nested(self.top)
            self.expect("\\}")
            return ("set", v[1] if _kind(v) == "list" else [v])
        if t == "|":
            v = _scalar(self.nested(self.sum))
            self.expect("|")
            return sp.Abs(v)
        if len(t) == 1 and t.isalpha():
            return {"e": sp.E, "i": sp.I}.get(t) or sp.Symbol(t + self.subscript())
        name = t[1:] if t[0] == "\\" else _refuse(t)
        if name == "frac":
            return _scalar(self.arg()) / _scalar(self.arg())
        if name == "sqrt":
            if self.accept("["):
                n = self.nested(self.top)
                self.expect("]")
                return sp.root(_scalar(self.arg()), _scalar(n))
            return sp.sqrt(_scalar(self.arg()))
        if name == "binom":
            n, k = _scalar(self.arg()), _scalar(self.arg())
            if n.is_number and not (n.is_Integer and abs(n) <= MAX_FACTORIAL):
                raise _Refuse("binomial too large")
            return sp.binomial(n, k)
        if name in ("pi", "infty", "emptyset", "varnothing"):
            return {"pi": sp.pi, "infty": sp.oo}.get(name, ("set", []))
        if name in _GREEK:
            return sp.Symbol(name + self.subscript())
        if name == "begin":
            return self.matrix()
        return self.function(name)

    def subscript(self):
        if not self.accept("_"):
            return ""
        t = self.next()
        if t == "{":
            t = "".join(iter(self.next, "}"))
        return "_" + t if re.fullmatch(r"\w+", t) else _refuse("subscript")

    def function(self, name):
        f = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sec": sp.sec, "csc": sp.csc, "cot": sp.cot,
             "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "arcsin": sp.asin, "arccos": sp.acos,
             "arctan": sp.atan, "ln": sp.log, "log": sp.log, "exp": sp.exp}.get(name) or _refuse(name)
        base = _scalar(self.arg()) if name == "log" and self.accept("_") else None
        power = _scalar(self.arg() if self.peek() == "{" else self.nested(self.unary)) if self.accept("^") else None
        x = _scalar(self.arg() if self.peek() == "(" else self.power())
        if power == -1 and name in ("sin", "cos", "tan"):  # \sin^{-1} x is arcsin x
            return {"sin": sp.asin, "cos": sp.acos, "tan": sp.atan}[name](x)
        v = sp.log(x, base) if base is not None else f(x)
        return _pow(v, power) if power is not None else v

    def matrix(self):
        self.expect("{")
        env = "".join(iter(self.next, "}"))
        if env not in ("pmatrix", "bmatrix", "matrix", "array", "vmatrix"):
            raise _Refuse(env)
        if env == "array" and self.accept("{"):
            "".join(iter(self.next, "}"))  # column spec such as {cc}
        rows = [[]]
        while not self.accept("\\end"):
            rows[-1].append(_scalar(self.nested(self.relation)))
            if self.accept("\\\\") and self.peek() != "\\end":
                rows.append([])
            else:
                self.accept("&")
        self.expect("{")
        "".join(iter(self.next, "}"))
        if any(len(r) != len(rows[0]) for r in rows) or not rows[0]:
            raise _Refuse("ragged matrix")
        return sp.ImmutableMatrix(rows)


def _refuse(why):
    raise _Refuse(why)

# ---------------------------------------------------------------- comparison of parsed values (worker only)

# 5 probe points, each symbol an unrelated value in each: points on one line in symbol space (the values were
# a + b k / 7) hide every combination that vanishes along it, such as x - 2y + z
_rng = random.Random(2508)
_PROBES = [[round(0.3 + 3.4 * _rng.random(), 4) for _ in range(16)] for _ in range(5)]


def _kind(v):
    return v[0] if isinstance(v, tuple) else "matrix" if isinstance(v, sp.MatrixBase) else "scalar"


def _close(a, b):
    """Rationals: _near. Others: within EXACT_TOL of the larger in 30-digit arithmetic with unbounded exponents
    (1000001 \\sqrt2 != 10^6 \\sqrt2, 1/2004! != 1/2006!), or within a rounded decimal's last place."""
    if a.is_Rational and b.is_Rational:
        return _near(Fraction(int(a.p), int(a.q)), Fraction(int(b.p), int(b.q)), _request[0])
    a, b = sp.N(a, 30), sp.N(b, 30)
    tol = sp.Float(10, 30) ** -_request[0] if _request[0] >= 6 else 0
    return a == b or bool(abs(a - b) <= max(EXACT_TOL * max(abs(a), abs(b)), tol))


def _finite(v):
    return v.is_number and not v.has(sp.nan, sp.zoo, sp.oo, -sp.oo)


def _at_probes(exprs):
    """Values of exprs at each probe point where all are finite; symbols set to generic rationals."""
    symbols = sorted(set().union(*(e.free_symbols for e in exprs)), key=str)
    rows = []
    for values in _PROBES:
        point = {s: sp.Rational(str(values[k % 16] + k // 16)) for k, s in enumerate(symbols)}
        vals = [sp.N(e.subs(point), 30) for e in exprs]
        rows += [vals] if all(_finite(v) for v in vals) else []
    return rows


def _same_scalar(a, b):
    """Constants: numerically close. Expressions: close at 5 probe points (>= 3 defined), else simplify."""
    if a == b:
        return True
    if not (a.free_symbols or b.free_symbols) and _finite(a) and _finite(b):
        return _close(a, b)
    rows = _at_probes([a, b])
    if any(not _close(x, y) for x, y in rows):
        return False
    return len(rows) >= 3 or sp.simplify(a - b) == 0


def _constant_ratio(d1, d2, positive):
    """d1 / d2 is one non-zero constant at every probe point: 2x = 4 ~ x = 2, x < 1 ~ 2x < 2."""
    ratios = [sp.N(x / y, 30) for x, y in _at_probes([d1, d2]) if y != 0]
    if len(ratios) < 2 or ratios[0] == 0 or (positive and not (ratios[0].is_real and ratios[0] > 0)):
        return False
    return all(_close(q, ratios[0]) for q in ratios)


def _flip(rel):
    """a > b > c -> c < b < a, so that only =, !=, <, <= remain."""
    _, ops, members = rel
    if any(op in (">", ">=") for op in ops) and all(op in ("=", ">", ">=") for op in ops):
        return ("rel", [{">": "<", ">=": "<="}.get(op, op) for op in reversed(ops)], members[::-1])
    return rel


def _lone_variable(v):
    return _kind(v) == "rel" and set(v[1]) == {"="} and isinstance(v[2][0], sp.Symbol)


def _interval(rel):
    """-1 < x <= 2 -> ("seq", "(", "]", [-1, 2]); x > 5 -> ("seq", "(", ")", [5, oo]); else None."""
    _, ops, members = _flip(rel)
    if not set(ops) <= {"<", "<="} or len(ops) > 2:
        return None
    if len(ops) == 1:  # one bound: the other is infinite
        low = isinstance(members[1], sp.Symbol)  # 5 < x: the bound is the lower one
        ops, members = (ops + ["<"], members + [sp.oo]) if low else (["<"] + ops, [-sp.oo] + members)
    if not isinstance(members[1], sp.Symbol) or any(_kind(m) != "scalar" or m.free_symbols for m in members[::2]):
        return None
    return ("seq", "(" if ops[0] == "<" else "[", ")" if ops[1] == "<" else "]", [members[0], members[2]])


def _same_relation(a, b):
    a, b = _flip(a), _flip(b)
    if _lone_variable(a) and _lone_variable(b) and a[2][0] == b[2][0]:
        return _same(a[2][-1], b[2][-1])
    if a[1] != b[1] or len(a[2]) != len(b[2]):
        return False
    if len(a[2]) > 2:
        return all(_same(x, y) for x, y in zip(a[2], b[2]))
    d1, d2 = _scalar(a[2][0]) - _scalar(a[2][1]), _scalar(b[2][0]) - _scalar(b[2][1])
    if not (d1.free_symbols or d2.free_symbols):
        return _same_scalar(d1, d2) or (a[1][0] in ("=", "!=") and _same_scalar(d1, -d2))
    return _constant_ratio(d1, d2, positive=a[1][0] in ("<", "<="))


def _same_unordered(xs, ys):
    ys = list(ys)
    for x in xs:
        j = next((j for j, y in enumerate(ys) if _same(x, y)), None)
        if j is None:
            return False
        ys.pop(j)
    return not ys


def _items(v):
    """Members of a list / set (a \\pm pair inside counts as its two members), tuple or vector; else [v]."""
    k = _kind(v)
    if k in ("list", "set"):
        return [y for x in v[1] for y in (x[1] if _kind(x) == "list" else [x])]
    return v[3] if k == "seq" else list(v) if k == "matrix" and 1 in v.shape else [v]


def _same(a, b):
    """Equivalence of two parsed answers under the policies of the module docstring."""
    ka, kb = _kind(a), _kind(b)
    if ka == "rel" and kb == "rel":
        return _same_relation(a, b)
    if "rel" in (ka, kb):  # x = 3 ~ 3, -1 < x < 2 ~ (-1, 2); no other relation equals a value
        rel, other = (a, b) if ka == "rel" else (b, a)
        interval = _interval(rel)
        if interval:
            return _same(interval, other)
        constant = all(_kind(m) == "scalar" and not m.free_symbols for m in rel[2]) and set(rel[1]) == {"="}
        return (_lone_variable(rel) or constant) and _same(rel[2][-1], other)  # 1/2 = 10/9 states 10/9
    if "union" in (ka, kb):
        return _same_unordered(a[1] if ka == "union" else [a], b[1] if kb == "union" else [b])
    if ka == kb == "seq":
        if ("[" in (a[1], b[1]) or "]" in (a[2], b[2])) and (a[1], a[2]) != (b[1], b[2]):
            return False  # an interval: its brackets matter
        return len(a[3]) == len(b[3]) and all(_same(x, y) for x, y in zip(a[3], b[3]))
    if "set" in (ka, kb) or ka == kb == "list":
        xs, ys = _items(a), _items(b)
        if "set" in (ka, kb) or len(xs) != len(ys):  # repeated members do not count: 1, 1, 2 ~ \\{1, 2\\}
            xs, ys = ([x for i, x in enumerate(zs) if not any(_same(x, y) for y in zs[:i])] for zs in (xs, ys))
        return _same_unordered(xs, ys)
    if ka == kb == "matrix":
        return a.shape == b.shape and all(_same_scalar(x, y) for x, y in zip(a, b))
    if ka != kb:  # a tuple written without brackets, or as a column vector, keeps its order
        xs, ys = _items(a), _items(b)
        return len(xs) == len(ys) > 1 and all(_same(x, y) for x, y in zip(xs, ys))
    return _same_scalar(a, b)

if __name__ == "__main__":  # the benchmark command is bench_verify.py
    _serve() if sys.argv[1:] == ["--serve"] else sys.exit("verify.py runs only as its sympy worker (--serve); "
                                                            "the benchmark is python bench_verify.py FILE")
