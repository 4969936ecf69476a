"""Rule verifier: extract a final answer from model text and decide if it equals the reference.

    extract_answer("13+5=18\\n#### 18")                       -> "18"
    verify("so the answer is \\boxed{\\frac{1}{2}}", "0.5")    -> True
    verify("... $x = 1 \\pm \\sqrt{2}$ ... \\boxed{1\\pm\\sqrt2}", "1+\\sqrt{2}, 1-\\sqrt{2}") -> True

verify(completion, reference, question=None, last_number=False, timeout=TIMEOUT_S) -> bool
    The reference may be a bare answer or a worked solution (its final answer is extracted first).
    Extraction, in order: the last \\boxed{}/\\fbox{} (nested braces); else the text after the last
    "####", "final answer is", "answer is", "Answer:" or a line-start "A:"; else a completion that is a
    single short line is the answer itself; else, only with last_number=True, the last number.

Equivalence policies (cheapest test first; each row is tested in test_verify.py):
    | policy                  | equal                                 | not equal                        |
    |-------------------------|---------------------------------------|----------------------------------|
    | normalised string       | \\text{Evelyn} ~ evelyn, \\dfrac ~ \\frac | Evelyn ~ Carla                   |
    | thousands separators    | 1,000 ~ 1000, 14{,}916 ~ 14916        | 32, 349 ~ 32349 (a list)         |
    | decoration              | $18 ~ 18, 90^\\circ ~ 90, 5 cm ~ 5     |                                  |
    | numbers, rel. tol 1e-6  | 12.0 ~ 12, 0.5 ~ \\frac12 ~ 1/2         | 2^{-99} ~ 2^{-98} (no abs. tol)  |
    | percent                 | 28\\% ~ 28, 10\\% ~ 0.1                  | 0.28 ~ 28                        |
    | lone variable           | x = 3 ~ 3, x = 2+1 ~ 3                 | 2x + z = 1 ~ 1                   |
    | equations               | a=b ~ b=a, 2x=4 ~ x=2 (constant ratio) | 3x-y=0 ~ 3x+4y=0                 |
    | inequalities            | x < 1 ~ -x > -1, x>=5 ~ 5 \\le x       | x < 1 ~ x > -1                   |
    | expressions (sympy)     | \\sec^2 y ~ \\tan^2 y + 1, \\sqrt8 ~ 2\\sqrt2 | 4\\sqrt(2) ~ 4 (read as 4*sqrt 2) |
    | bare lists, sets, \\pm   | unordered: 1, 2 ~ 2, 1; 1\\pm 2 ~ 3, -1 |                                  |
    | tuples, matrices        | ordered: (1, 4.5) ~ (1, \\frac92)      | (1, 2) ~ (2, 1)                  |
    | intervals, unions       | [0, 1) ~ [0, 1); union order free      | (0, 9) ~ [0, 9)                  |
    | multiple choice         | (B) ~ B; "15" ~ B if question has (B) 15 | (A) ~ B                        |
    | yes / no                | Yes ~ True ~ correct                   | Yes ~ No                         |
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
stats["timeouts"] counts it. Starting a worker (importing sympy, ~0.5 s) is not counted; call
warm_up() first if the first call must also be fast.
"""
import json, os, re, select, subprocess, sys, threading, time
from fractions import Fraction

TIMEOUT_S = 1.0
MAX_TEXT_CHARS = 1_000_000
MAX_ANSWER_CHARS = 2_000
MAX_DEPTH = 100
MAX_POW_BITS = 100_000
MAX_FACTORIAL = 5_000
REL_TOL = 1e-6
stats = {"timeouts": 0, "sympy_calls": 0}  # read by callers; reset freely

# ---------------------------------------------------------------- extraction

_BRACE = re.compile(r"[{}]")
_MARKER = re.compile(r"####|final answer(?: is)?|answer is|answer\s*:|^[ \t*]*a:", re.I | re.M)
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _braced(text, j):
    """Content of the {...} group opening at text[j], or None if unbalanced or too long."""
    depth = 0
    for m in _BRACE.finditer(text, j, min(len(text), j + MAX_ANSWER_CHARS + 2)):
        depth += 1 if m.group() == "{" else -1
        if depth == 0:
            return text[j + 1:m.start()]
    return None


def _last_boxed(text):
    """Inside of the last well-formed \\boxed{...} or \\fbox{...}; tries at most 8 candidates."""
    hits = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*(?=\{)", text[-MAX_TEXT_CHARS:])]
    for j in reversed(hits[-8:]):
        inner = _braced(text, j)
        if inner is not None:
            return inner
    return None


def _after_marker(text):
    """Answer that follows the last answer marker: its line (or the next non-empty one), up to a full stop."""
    last = None
    for last in _MARKER.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end():last.end() + 4 * MAX_ANSWER_CHARS].lstrip(" \t:*")
    for opener, closer in (("$$", "$$"), ("\\[", "\\]"), ("$", "$"), ("\\(", "\\)")):
        if rest.lstrip().startswith(opener):
            inner = rest.lstrip()[len(opener):]
            end = inner.find(closer)
            if end != -1:
                return inner[:end]
            break  # an unmatched $ is a currency sign
    line = rest.strip().split("\n", 1)[0]
    return re.split(r"\.(?=\s|\*|$)", line, maxsplit=1)[0]


def extract_answer(text, last_number=False):
    """Final answer string of a completion or worked solution, or None (see module docstring)."""
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        return None
    ans = _last_boxed(text)
    if ans is None:
        ans = _after_marker(text)
    if ans is None and "\n" not in text.strip() and "\\boxed" not in text and (len(text) <= 40 or not _is_text(text)):
        ans = text  # a short one-line completion is its own answer
    if ans is None and last_number:
        nums = _LAST_NUMBER.findall(text[-MAX_ANSWER_CHARS:])
        ans = nums[-1] if nums else None
    if ans is None or len(ans) > MAX_ANSWER_CHARS:
        return None
    return _clean(ans) or None

# ---------------------------------------------------------------- normalisation

_UNWRAP = re.compile(r"\\(?:text|textbf|textit|textnormal|mathrm|mathbf|mbox|operatorname|boxed)\s*\{([^{}]*)\}")
_DROP = re.compile(r"(?<!\\)\\(?:left|right|displaystyle|[,;:! ]|quad|qquad)|\^\s*\{?\\circ\}?|°|\\circ|\\\$|\*\*")
_UNITS = re.compile(r"^(.*?\d)\s*(?:[a-zA-Z\u00b2\u00b3]{2,}\.?\s*)+(?:\^\s*\d)?$")
_UNICODE = str.maketrans({"−": "-", "×": "*", "·": "*", "÷": "/", "π": "\\pi ", "∞": "\\infty ",
                          "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "√": "\\sqrt", "∪": "\\cup ", "€": ""})


def _clean(s):
    """Strip decoration that never changes the value: $, \\(, \\text{}, units, spacing commands, a full stop."""
    s = s.translate(_UNICODE).strip()
    for _ in range(8):
        s, n = _UNWRAP.subn(r"\1", s)
        if not n:
            break
    s = _DROP.sub("", s).replace("\\%", "%").replace("{,}", ",").replace("\\dfrac", "\\frac")
    s = s.replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac").replace("$", "")
    s = re.sub(r"\\[\[\]()]", "", s).strip().rstrip(".,;").strip()
    s = re.sub(r"\s*(?:percent(?:age)?|pct)$", "%", s)
    m = _UNITS.match(s)
    if m and _number(m.group(1)) is not None:
        s = m.group(1)
    return re.sub(r"\s+", " ", s).strip()


def _drop_lone_variable(s):
    """'x = 3' -> '3', 'x = 5+5+1 = 11' -> '11' (the last member decides)."""
    m = re.match(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*([^=<>]+)$", s) or re.match(r"^[a-zA-Z]\s*=.*=\s*([^=<>]+)$", s)
    return m.group(1).strip() if m else s


_FRAC = re.compile(r"(-?)\\frac\{?(\d+(?:\.\d+)?)\}?\{?(\d+(?:\.\d+)?)\}?")
_PLAIN = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?(?:[eE][-+]?\d{1,3})?")


def _number(s):
    """Exact value of a plain number: '1,000', '-12.0', '3/4', '\\frac{3}{4}', '\\frac34', '2\\frac12', '1e-3'."""
    s = re.sub(r"(?<!,)\s+", "", s)  # '32, 349' keeps its space: it is a list
    if len(s) > 100:
        return None
    m = re.fullmatch(r"(-?\d+)\\frac\{(\d+)\}\{(\d+)\}", s)  # mixed number
    if m and int(m.group(3)):
        whole = int(m.group(1))
        return whole + (-1 if m.group(1).startswith("-") else 1) * Fraction(int(m.group(2)), int(m.group(3)))
    m = _FRAC.fullmatch(s) if "\\frac" in s else None
    if m and len(m.group(0)) == len(s) and ("{" in s or len(m.group(2)) == len(m.group(3)) == 1):
        num, den = Fraction(m.group(2)), Fraction(m.group(3))
        return (-num if m.group(1) else num) / den if den else None
    if s.count("/") == 1:
        a, b = (_number(x) for x in s.split("/"))
        return a / b if a is not None and b else None
    if _PLAIN.fullmatch(s) and any(c.isdigit() for c in s):
        return Fraction(s.replace(",", ""))
    return None


def _close(a, b):
    return a == b or abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _numbers_equal(pred, ref):
    """True/False when both are plain numbers (percent: 28% ~ 28 ~ 0.28 only if a side wrote %), else None."""
    pp, rp = pred.endswith("%"), ref.endswith("%")
    a, b = _number(pred.rstrip("%").rstrip("\\")), _number(ref.rstrip("%").rstrip("\\"))
    if a is None or b is None:
        return None
    return _close(a, b) or (pp and _close(a / 100, b)) or (rp and _close(a, b / 100))

# ---------------------------------------------------------------- text answers

_YES, _NO = {"yes", "true", "correct", "y"}, {"no", "false", "incorrect", "n"}
_FUNC_WORDS = {"sin", "cos", "tan", "sec", "csc", "cot", "log", "ln", "exp", "sqrt", "frac", "pi", "infty",
               "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "cdot", "times", "pm", "cup", "le", "ge",
               "leq", "geq", "lt", "gt", "neq", "ne", "approx", "begin", "end", "pmatrix", "bmatrix", "matrix",
               "array", "binom", "infty", "emptyset", "varnothing", "mid", "div", "theta", "alpha", "beta",
               "gamma", "delta", "lambda", "mu", "sigma", "omega", "phi", "rho", "tau", "epsilon", "circ"}


def _is_text(s):
    return any(w.lower() not in _FUNC_WORDS for w in re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}", s))


def _choice(s):
    m = re.fullmatch(r"\(?([A-Ea-e])\)?(?:[.:)]\s*.*)?|\(([A-E])\)\s*.*", s.strip())
    return (m.group(1) or m.group(2)).upper() if m else None


def _options(question):
    """{'A': '12', ...} from '(A) 12 (B) 15' or line-start 'A. 12' / 'A) 12' in the question."""
    found = re.findall(r"(?:^|\s)\(?([A-E])[).:]\s*(.+?)(?=\s+\(?[A-E][).:]\s|\n|$)", question or "", re.M)
    return {k: _clean(v) for k, v in found}

# ---------------------------------------------------------------- verify


def verify(completion, reference, question=None, last_number=False, timeout=TIMEOUT_S):
    """True when the completion's final answer equals the reference's. Never raises; False on timeout."""
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        reference = repr(reference)  # SVAMP-style 51.0
    try:
        pred = extract_answer(completion, last_number=last_number)
        ref = extract_answer(reference) if isinstance(reference, str) else None
        if ref is None and isinstance(reference, str) and len(reference) <= MAX_ANSWER_CHARS:
            ref = _clean(reference)
        if not pred or not ref:
            return False
        return _equal(pred, ref, question, timeout)
    except RecursionError:  # defence in depth; the parser limits depth itself
        return False


def _equal(pred, ref, question, timeout):
    key = lambda s: re.sub(r"\s+", "", s).lower()
    if key(pred) == key(ref):
        return True
    opts = _options(question) if question else {}
    cp, cr = _choice(pred), _choice(ref)
    if cr and (len(ref) <= 3 or cp):  # the reference is an option letter
        return cp == cr or (cr in opts and cp is None and _equal(pred, opts[cr], None, timeout))
    if cp and cp in opts and len(pred) <= 3:
        return _equal(opts[cp], ref, None, timeout)
    lp, lr = key(pred), key(ref)
    if (lp in _YES and lr in _YES) or (lp in _NO and lr in _NO):
        return True
    if "=" not in pred or "=" not in ref:  # y = 2x + 1 ~ 2x - y + 1 = 0 is for the sympy path
        pred, ref = _drop_lone_variable(pred), _drop_lone_variable(ref)
    if key(pred) == key(ref):
        return True
    same = _numbers_equal(pred, ref)
    if same is not None:
        return same
    if _is_text(pred) or _is_text(ref):
        return False
    return _ask_worker(pred, ref, timeout)

# ---------------------------------------------------------------- the sympy worker process

_pool, _pool_lock, _pool_pid = [], threading.Lock(), [os.getpid()]


def _spawn():
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)


def _readline(proc, deadline):
    """One reply line from the worker, or None when the deadline passes first (works in any thread)."""
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
        if _pool_pid[0] != os.getpid():  # forked child: the parent's workers are not ours
            _pool.clear()
            _pool_pid[0] = os.getpid()
        proc = _pool.pop() if _pool else None
    if proc is None or proc.poll() is not None:
        proc = _spawn()
    if getattr(proc, "ready", False) is False:
        if _readline(proc, time.monotonic() + 60) != "ready":
            proc.kill()
            raise RuntimeError("verify.py: the sympy worker process failed to start (is sympy installed?)")
        proc.ready = True
    return proc


def warm_up(workers=1):
    """Start workers now (one per thread that will call verify at once) so no call waits for a start."""
    procs = [_take_worker() for _ in range(workers)]
    with _pool_lock:
        _pool.extend(procs)


def _ask_worker(pred, ref, timeout):
    proc = _take_worker()
    stats["sympy_calls"] += 1
    proc.stdin.write((json.dumps([pred, ref]) + "\n").encode())
    reply = _readline(proc, time.monotonic() + timeout)
    if reply is None:
        proc.kill()
        proc.wait()
        with _pool_lock:
            stats["timeouts"] += 1
        return False
    with _pool_lock:
        _pool.append(proc)
    return reply == "1"


def _serve():
    """Worker loop: one JSON [pred, ref] per line in, '1' or '0' per line out."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a runaway sympy call dies, not the host
    except (ImportError, ValueError, OSError):
        pass
    global sp
    import sympy as sp
    out = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # a stray print inside sympy can never corrupt the reply channel
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            pred, ref = json.loads(line)
            ok = _same(_parse(pred), _parse(ref))
        except Exception:  # _Refuse, RecursionError, MemoryError, sympy's own errors: not equal
            ok = False
        out.write("1\n" if ok else "0\n")
        out.flush()

# ---------------------------------------------------------------- parser: text -> sympy objects (worker only)

sp = None  # sympy, imported by the worker only; the caller's process never needs it


class _Refuse(Exception):
    """The text is not math we read (or is too big to read safely)."""


_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|((?:arc)?(?:sin|cos|tan|sec|csc|cot)h?|sqrt|log|ln|exp|pi)"
                    r"(?![a-zA-Z])|(\\[a-zA-Z]+|\\\\|\\[{}|])|(<=|>=|!=|[-+*/^_=<>(),\[\]{}|!&]|[a-zA-Z]))")
_ALIAS = {"\\le": "<=", "\\leq": "<=", "\\leqslant": "<=", "\\ge": ">=", "\\geq": ">=", "\\geqslant": ">=",
          "\\lt": "<", "\\gt": ">", "\\ne": "!=", "\\neq": "!=", "\\cdot": "*", "\\times": "*", "\\div": "/",
          "\\lbrace": "\\{", "\\rbrace": "\\}", "\\vert": "|", "\\mid": "|", "\\to": "="}
_RELS = {"=", "<", ">", "<=", ">=", "!=", "\\approx"}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "lambda", "mu",
          "nu", "xi", "rho", "sigma", "tau", "phi", "varphi", "chi", "psi", "omega"}
_FUNCS = {"sin", "cos", "tan", "sec", "csc", "cot", "sinh", "cosh", "tanh", "arcsin", "arccos", "arctan",
          "log", "ln", "exp"}


def _tokenize(s):
    toks, pos = [], 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            if s[pos:].strip() == "":
                break
            raise _Refuse(s[pos:pos + 10])
        num, word, cmd, op = m.groups()
        toks.append(num or ("\\" + word if word else _ALIAS.get(cmd or op, cmd or op)))
        pos = m.end()
    return toks


def _parse(s):
    """LaTeX / plain math answer -> sympy Expr, Matrix, or a tagged tuple:
    ("list", items) bare comma list or a +- pair   ("set", items)   ("seq", open, close, items) tuple/interval
    ("union", parts)   ("rel", ops, members) e.g. ("rel", ["="], [x, 3])."""
    p = _Parser(s.replace("%", ""))
    v = p.top()
    if p.i != len(p.toks):
        raise _Refuse(p.peek())
    return v


def _scalar(v):
    if not isinstance(v, sp.Basic):
        raise _Refuse("not a scalar")
    return v


def _pow(base, exp):
    base, exp = _scalar(base), _scalar(exp)
    if exp.is_number and base.is_number and base not in (0, 1, -1):
        e = abs(complex(sp.N(exp, 15)))
        bits = max(sp.Integer(sp.fraction(base)[0]).p.bit_length() if base.is_Rational else 64, 1)
        if e > 10_000 or (base.is_Rational and e * bits > MAX_POW_BITS):
            raise _Refuse("power too large")  # 9^{9^{9^9}} stops here, before any big arithmetic
    elif exp.is_number and abs(complex(sp.N(exp, 15))) > 10_000:
        raise _Refuse("power too large")
    return sp.Pow(base, exp)


class _Parser:
    """Recursive descent: top = union (',' union)* ; union = relation (\\cup relation)* ;
    relation = sum (relop sum)* ; sum = term (('+'|'-'|\\pm) term)* ; term = unary (('*'|'/'|implicit) power)* ;
    unary = ('-'|'+'|\\pm) unary | power ; power = postfix ('^' exponent)? ; postfix = atom '!'*."""

    def __init__(self, s):
        self.toks, self.i, self.depth = _tokenize(s), 0, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def next(self):
        t = self.peek()
        if t is None:
            raise _Refuse("unexpected end")
        self.i += 1
        return t

    def accept(self, *ts):
        if self.peek() in ts:
            self.i += 1
            return True
        return False

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
            op = self.next()
            member = self.sum()
            if op != "\\approx":  # "= 1/3 \approx 0.33": the approximation is not the answer
                ops.append(op)
                members.append(member)
        if not ops:
            return members[0]
        return ("rel", ops, members)

    def sum(self):
        v = self.term()
        while self.peek() in ("+", "-", "\\pm", "\\mp"):
            op, w = self.next(), self.term()
            if op == "+":
                v = _scalar(v) + _scalar(w)
            elif op == "-":
                v = _scalar(v) - _scalar(w)
            else:  # a \pm b is the unordered pair {a + b, a - b}
                v = ("list", [_scalar(v) + _scalar(w), _scalar(v) - _scalar(w)])
        return v

    def term(self):
        v = self.nested(self.unary)
        while True:
            t = self.peek()
            if t == "*":
                self.next()
                v = v * _scalar(self.nested(self.unary)) if isinstance(v, sp.MatrixBase) else _scalar(v) * self.nested(self.unary)
            elif t == "/":
                self.next()
                v = _scalar(v) / _scalar(self.nested(self.unary))
            elif t is not None and (t[0].isalnum() or t[0] == "." or t in ("(", "{", "\\{") or
                                    (t[0] == "\\" and t not in ("\\}", "\\\\", "\\end", "\\cup", "\\pm", "\\mp", "\\approx"))):
                w = self.power()
                v = v * w if isinstance(v, sp.MatrixBase) or isinstance(w, sp.MatrixBase) else _scalar(v) * _scalar(w)
            else:
                return v

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
        base = self.postfix()
        if self.accept("^"):
            exp = self.arg() if self.peek() == "{" else self.nested(self.unary)
            return _pow(base, exp)
        return base

    def postfix(self):
        v = self.atom()
        while self.accept("!"):
            v = _scalar(v)
            if v.is_number and not (v.is_Integer and 0 <= v <= MAX_FACTORIAL):
                raise _Refuse("factorial too large")
            v = sp.factorial(v)
        return v

    def arg(self):
        """A LaTeX macro argument: {group}, one digit of a number (\\frac12), (malformed) or one atom."""
        t = self.peek()
        if t == "{":
            self.next()
            v = self.nested(self.top)
            self.expect("}")
            return v
        if t is not None and t[0].isdigit() and len(t) > 1:
            self.toks[self.i] = t[1:]
            return sp.Integer(int(t[0]))
        return self.postfix()

    def atom(self):
        t = self.next()
        if t[0].isdigit() or t[0] == ".":
            f = Fraction(t)
            if self.peek() == "_":
                raise _Refuse("number base subscript")
            return sp.Rational(f.numerator, f.denominator)
        if t in ("(", "["):
            if self.peek() in (")", "]"):
                raise _Refuse("empty brackets")
            v = self.nested(self.top)
            close = self.next()
            if close not in (")", "]"):
                raise _Refuse("unclosed bracket")
            items = v[1] if isinstance(v, tuple) and v[0] == "list" else None
            if items is None and (t, close) == ("(", ")"):
                return v
            if items is None:
                raise _Refuse("one element in [ ]")
            return ("seq", t, close, items)
        if t == "{":
            v = self.nested(self.top)
            self.expect("}")
            return v
        if t == "\\{":
            items = [] if self.peek() == "\\}" else self.nested(self.top)
            self.expect("\\}")
            return ("set", items[1] if isinstance(items, tuple) and items[0] == "list" else ([items] if items != [] else []))
        if t == "|":
            v = self.nested(self.sum)
            self.expect("|")
            return sp.Abs(_scalar(v))
        if len(t) == 1 and t.isalpha():
            if t == "e":
                return sp.E
            if t == "i":
                return sp.I
            return sp.Symbol(t + self.subscript())
        if t[0] != "\\":
            raise _Refuse(t)
        name = t[1:]
        if name in ("frac", "dfrac", "tfrac", "cfrac"):
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
        if name == "pi":
            return sp.pi
        if name == "infty":
            return sp.oo
        if name in ("emptyset", "varnothing"):
            return ("set", [])
        if name in _GREEK:
            return sp.Symbol(name + self.subscript())
        if name in _FUNCS:
            return self.function(name)
        if name == "begin":
            return self.matrix()
        raise _Refuse(t)

    def subscript(self):
        if not self.accept("_"):
            return ""
        t = self.next()
        if t == "{":
            parts = []
            while self.peek() not in ("}", None):
                parts.append(self.next())
            self.expect("}")
            t = "".join(parts)
        if not re.fullmatch(r"\w+", t):
            raise _Refuse("subscript")
        return "_" + t

    def function(self, name):
        power = base = None
        if name == "log" and self.accept("_"):
            base = _scalar(self.arg())
        if self.accept("^"):
            power = _scalar(self.arg() if self.peek() == "{" else self.nested(self.unary))
        if self.accept("("):
            x = _scalar(self.nested(self.top))
            self.expect(")")
        else:
            x = _scalar(self.power())
        inverse = {"sin": sp.asin, "cos": sp.acos, "tan": sp.atan}
        if power == -1 and name in inverse:
            return inverse[name](x)
        f = {"sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "sec": sp.sec, "csc": sp.csc, "cot": sp.cot,
             "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "arcsin": sp.asin, "arccos": sp.acos,
             "arctan": sp.atan, "ln": sp.log, "exp": sp.exp}.get(name)
        v = sp.log(x, base) if name == "log" and base is not None else (f or sp.log)(x)
        return _pow(v, power) if power is not None else v

    def matrix(self):
        self.expect("{")
        env = "".join(iter(self.next, "}"))
        if env not in ("pmatrix", "bmatrix", "matrix", "array", "vmatrix"):
            raise _Refuse(env)
        if env == "array" and self.accept("{"):
            while self.next() != "}":
                pass
        rows, row = [], []
        while not self.accept("\\end"):
            row.append(_scalar(self.nested(self.relation)))
            if self.accept("\\\\"):
                rows.append(row)
                row = []
            else:
                self.accept("&")
        if row:
            rows.append(row)
        self.expect("{")
        while self.next() != "}":
            pass
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise _Refuse("ragged matrix")
        return sp.ImmutableMatrix(rows)

# ---------------------------------------------------------------- comparison of parsed values (worker only)

_PROBES = [(0.5377, 1.8339), (2.2588, 0.8622), (0.3188, 1.3077), (3.5784, 2.7694), (1.3499, 3.0349)]


def _kind(v):
    if isinstance(v, tuple):
        return v[0]
    return "matrix" if isinstance(v, sp.MatrixBase) else "scalar"


def _close_values(a, b):
    """Equal within REL_TOL of the larger magnitude, in 30-digit arithmetic with unbounded exponents (so
    1/2004! and 1/2006! differ); there is no absolute tolerance."""
    a, b = sp.N(a, 30), sp.N(b, 30)
    return a == b or bool(abs(a - b) <= REL_TOL * max(abs(a), abs(b)))


def _finite(v):
    return v.is_number and v.is_finite is not False and not v.has(sp.nan, sp.zoo, sp.oo, -sp.oo)


def _values_at_probes(exprs, symbols):
    """[(value of each expr) for each probe point where all are finite], symbols set to generic rationals."""
    out = []
    for a, b in _PROBES:
        point = {s: sp.Rational(str(a + b * k / 7)) for k, s in enumerate(sorted(symbols, key=str))}
        vals = [sp.N(e.subs(point), 30) for e in exprs]
        if all(_finite(v) for v in vals):
            out.append(vals)
    return out


def _same_scalar(a, b):
    if a == b:
        return True
    if a.has(sp.oo, -sp.oo, sp.zoo) or b.has(sp.oo, -sp.oo, sp.zoo):
        return sp.simplify(a - b) == 0
    symbols = a.free_symbols | b.free_symbols
    if not symbols:
        va, vb = sp.N(a, 30), sp.N(b, 30)
        return _finite(va) and _finite(vb) and _close_values(va, vb)
    rows = _values_at_probes([a, b], symbols)
    if any(not _close_values(va, vb) for va, vb in rows):
        return False
    return len(rows) >= 3 or sp.simplify(a - b) == 0


def _constant_ratio(d1, d2, positive):
    """d1 / d2 is the same non-zero constant at every probe point (2x = 4 ~ x = 2; x < 1 ~ 2x < 2)."""
    rows = [r for r in _values_at_probes([d1, d2], d1.free_symbols | d2.free_symbols) if r[1] != 0]
    ratios = [sp.N(r[0] / r[1], 30) for r in rows]
    if len(ratios) < 2 or ratios[0] == 0 or (positive and not (ratios[0].is_real and ratios[0] > 0)):
        return False
    return all(_close_values(q, ratios[0]) for q in ratios)


def _flip(rel):
    """a > b -> b < a so that only =, !=, <, <= remain."""
    _, ops, members = rel
    if all(op in ("=", "!=", "<", "<=") for op in ops):
        return rel
    if all(op in ("=", ">", ">=") for op in ops):
        return ("rel", [{">": "<", ">=": "<="}.get(op, op) for op in reversed(ops)], list(reversed(members)))
    return rel


def _lone_variable(v):
    return _kind(v) == "rel" and all(op == "=" for op in v[1]) and isinstance(v[2][0], sp.Symbol)


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


def _dedup(items):
    out = []
    for x in items:
        if not any(_same(x, y) for y in out):
            out.append(x)
    return out


def _items(v):
    k = _kind(v)
    if k in ("list", "set"):  # {1 \pm 2, 5} holds the pair's two members, not the pair
        return [y for x in v[1] for y in (x[1] if _kind(x) == "list" else [x])]
    if k == "seq":
        return v[3]
    if k == "matrix" and 1 in v.shape:
        return list(v)
    return [v]


def _same(a, b):
    """Structural equivalence of two parsed answers under the policies in the module docstring."""
    ka, kb = _kind(a), _kind(b)
    if ka == "rel" and kb == "rel":
        return _same_relation(a, b)
    if ka == "rel" or kb == "rel":  # x = 3 ~ 3; any other relation never equals a value
        rel, other = (a, b) if ka == "rel" else (b, a)
        return _lone_variable(rel) and _same(rel[2][-1], other)
    if "union" in (ka, kb):
        pa, pb = (a[1] if ka == "union" else [a]), (b[1] if kb == "union" else [b])
        return _same_unordered(pa, pb)
    if ka == "seq" and kb == "seq":
        interval = "[" in (a[1], b[1]) or "]" in (a[2], b[2])
        if interval and (a[1], a[2]) != (b[1], b[2]):
            return False
        return len(a[3]) == len(b[3]) and all(_same(x, y) for x, y in zip(a[3], b[3]))
    if ka == "set" or kb == "set":
        return _same_unordered(_dedup(_items(a)), _dedup(_items(b)))
    if ka == "list" and kb == "list":
        return _same_unordered(_items(a), _items(b))
    if "list" in (ka, kb) or "seq" in (ka, kb) or (ka == "matrix") != (kb == "matrix"):
        xs, ys = _items(a), _items(b)  # a tuple written without its brackets keeps its order
        return len(xs) == len(ys) > 1 and all(_same(x, y) for x, y in zip(xs, ys))
    if ka == "matrix":
        return a.shape == b.shape and all(_same_scalar(x, y) for x, y in zip(a, b))
    return _same_scalar(a, b)

# ---------------------------------------------------------------- benchmark command


def _field(row, path, where):
    v = row
    for key in path.split("."):
        if not isinstance(v, dict) or key not in v:
            raise SystemExit(f"{where}: field '{path}' not found (missing '{key}')")
        v = v[key]
    return v


def _label(v, where):
    if isinstance(v, bool) or v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    raise SystemExit(f"{where}: label {v!r} is not a boolean")


def load_pairs(path, fmt, completion_field, reference_field, label_field, question_field=None):
    """[(completion, reference, label, question)] from a jsonl file; gsm8k-solutions flattens the four
    labelled solutions of ../shared/data/gsm8k/example_model_solutions.jsonl (reference: text after 'A:')."""
    pairs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{where}: not valid JSON ({e.msg})")
            if fmt == "gsm8k-solutions":
                ref = _field(row, "ground_truth", where).rsplit("A:", 1)[-1].strip()
                for key, sol in row.items():
                    if isinstance(sol, dict) and "solution" in sol:
                        pairs.append((sol["solution"], ref, _label(sol.get("is_correct"), f"{where} {key}"), None))
                continue
            q = _field(row, question_field, where) if question_field else None
            pairs.append((str(_field(row, completion_field, where)), str(_field(row, reference_field, where)),
                          _label(_field(row, label_field, where), where), q))
    if not pairs:
        raise SystemExit(f"{path}: no rows")
    return pairs


def _run(fn, pairs, repeats):
    """Verdicts of one pass, per-call latencies of all passes (s), and the median calls/s over passes."""
    lat, rates = [], []
    for _ in range(repeats):
        t_pass, verdicts = time.perf_counter(), []
        for c, r, _, q in pairs:
            t = time.perf_counter()
            verdicts.append(bool(fn(c, r, q)))
            lat.append(time.perf_counter() - t)
        rates.append(len(pairs) / (time.perf_counter() - t_pass))
    return verdicts, sorted(lat), sorted(rates)[len(rates) // 2]


def _report(name, pairs, verdicts, lat, rate, timeouts):
    labels = [p[2] for p in pairs]
    tp = sum(v and l for v, l in zip(verdicts, labels))
    acc = sum(v == l for v, l in zip(verdicts, labels)) / len(labels)
    prec, rec = tp / max(sum(verdicts), 1), tp / max(sum(labels), 1)
    q = lambda f: 1000 * lat[min(int(f * len(lat)), len(lat) - 1)]
    print(f"{name:<12} {acc:>9.4f} {prec:>9.4f} {rec:>7.4f} {rate:>9.0f} {q(.5):>7.3f} {q(.99):>7.3f} "
          f"{1000 * lat[-1]:>8.1f} {timeouts:>8}")
    return acc


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Benchmark verify() against labelled completions.")
    ap.add_argument("file")
    ap.add_argument("--format", choices=["fields", "gsm8k-solutions"], default="fields")
    ap.add_argument("--completion-field", default="completion")
    ap.add_argument("--reference-field", default="reference")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--question-field")
    ap.add_argument("--last-number", action="store_true", help="fall back to the last number in a completion")
    ap.add_argument("--compare", choices=["math-verify"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    pairs = load_pairs(args.file, args.format, args.completion_field, args.reference_field, args.label_field,
                       args.question_field)
    print(f"{len(pairs)} labelled pairs from {args.file}; {args.repeats} passes each; latency over all passes")
    print(f"{'verifier':<12} {'accuracy':>9} {'precision':>9} {'recall':>7} {'calls/s':>9} {'p50_ms':>7} "
          f"{'p99_ms':>7} {'max_ms':>8} {'timeouts':>8}")
    warm_up()
    before = stats["timeouts"]
    ours = _run(lambda c, r, q: verify(c, r, question=q, last_number=args.last_number), pairs, args.repeats)
    acc = _report("ours", pairs, *ours, stats["timeouts"] - before)
    if args.compare != "math-verify":
        return
    try:
        import logging
        from math_verify import parse as mv_parse, verify as mv_verify
        logging.disable(logging.WARNING)
    except ImportError:
        raise SystemExit("--compare math-verify needs `pip install math-verify` (an optional dependency)")
    mv = _run(lambda c, r, q: mv_verify(mv_parse(r), mv_parse(c)), pairs, args.repeats)
    mv_acc = _report("math_verify", pairs, *mv, sum(t >= 5 for t in mv[1]))
    print(f"accuracy ours={acc:.4f} math_verify={mv_acc:.4f} speedup={ours[2] / mv[2]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        main()
