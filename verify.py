"""Rule verifier: extract a final answer and check it against a reference.

    extract_answer("13+5=18\\n#### 18")  -> "18"
    verify("so the answer is \\boxed{\\frac{1}{2}}", "0.5")  -> True
"""
import re
from fractions import Fraction

MAX_TEXT_CHARS = 1_000_000  # longer inputs are refused (extract_answer -> None)


def _last_braced(text, start):
    """Content of the {...} group opening at text[start] (nested braces), or None if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return None


def _boxed(text):
    for cmd in ("\\boxed", "\\fbox"):
        i = text.rfind(cmd)
        while i != -1:
            j = i + len(cmd)
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] == "{":
                inner = _last_braced(text, j)
                if inner is not None:
                    return inner
            i = text.rfind(cmd, 0, i)
    return None


_PHRASES = re.compile(r"(?:final answer is|the answer is|answer:|^\s*a:)", re.I | re.M)


def extract_answer(text):
    """Final answer string of a completion or worked solution, or None.

    Tries, in order: last \\boxed{}/\\fbox{}, last `#### x`, last "answer is x" / "Answer: x" / "A: x".
    """
    if not isinstance(text, str) or len(text) > MAX_TEXT_CHARS:
        return None
    ans = _boxed(text)
    if ans is None:
        i = text.rfind("####")
        if i != -1:
            ans = text[i + 4:].split("\n", 1)[0]
    if ans is None:
        hits = list(_PHRASES.finditer(text))
        if hits:
            ans = text[hits[-1].end():].split("\n", 1)[0]
            ans = re.split(r"\.(?:\s|$)", ans, 1)[0]
    if ans is None:
        return None
    ans = _clean(ans)
    return ans or None


def _clean(s):
    s = s.strip().strip("$").strip()
    s = re.sub(r"\\[()\[\]]", "", s)
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "%").rstrip(".").strip()
    return s


_NUM = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _number(s):
    """Exact value of a plain number string ('1,000', '12.0', '3/4', '\\frac{3}{4}', '50%'), else None."""
    s = s.replace(" ", "")
    pct = s.endswith("%")
    s = s.rstrip("%")
    m = re.fullmatch(r"(-?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}", s)
    if m:
        num, den = _number(m.group(2)), _number(m.group(3))
        if num is None or den in (None, 0):
            return None
        v = num / den * (-1 if m.group(1) else 1)
    elif "/" in s:
        a, _, b = s.partition("/")
        num, den = _number(a), _number(b)
        if num is None or den in (None, 0):
            return None
        v = num / den
    elif s and _NUM.fullmatch(s) and any(ch.isdigit() for ch in s):
        v = Fraction(s.replace(",", ""))
    else:
        return None
    return v / 100 if pct else v


def _close(a, b, rel=1e-6):
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


def verify(completion, reference):
    """True when the completion's final answer equals the reference's (a bare answer or worked solution)."""
    pred = extract_answer(completion)
    if pred is None:
        return False
    ref = extract_answer(reference) or _clean(reference or "")
    if pred == ref or pred.replace(" ", "") == ref.replace(" ", ""):
        return True
    a, b = _number(pred), _number(ref)
    return a is not None and b is not None and _close(a, b)
