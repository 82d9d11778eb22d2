/* _lpaccel: the numeric field text of an `asic` line-protocol point.
 *
 * Why this exists: formatting a dozen numbers per miner is most of what
 * kuat.uplink.lineproto.encode_asic costs, and it runs for every miner every cycle (50,000 per
 * cycle on a large farm). Python's float repr and f-strings cannot go much faster; this can.
 *
 * Scope, deliberately narrow: numbers only. No device-supplied string ever reaches this code
 * (the escaped series prefix, the timestamp and the pool-status comparison stay in Python),
 * so there is no escaping here to get wrong.
 *
 * Contract: the text is byte-identical to the fields written by
 * kuat.uplink.lineproto._encode_asic_pure, which stays the reference. Whenever an input is not one
 * of the plain types handled here, or its exact pure-Python output would need more than this
 * code does (ints beyond 64 bits, int(nan), float subclasses...), raise TypeError instead of
 * guessing: the caller then runs the pure path, which handles the value or raises the error it
 * always raised.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <string.h>

#ifdef __FAST_MATH__
#error "-ffast-math breaks isfinite() and the exactness argument of fast_repr()"
#endif

/* Keys (~200 bytes) + 7 float reprs (<= 24 bytes each) + 5 ints (<= 20 digits each) fit
 * well within this; put() still checks, so a mistake is an exception, not an overflow. */
#define BUF_SIZE 1024

typedef struct {
    char *pos;
    char *end;
} Buf;

static int
put(Buf *b, const char *s, size_t n)
{
    if ((size_t)(b->end - b->pos) < n) {
        PyErr_SetString(PyExc_SystemError, "_lpaccel: field buffer too small");
        return -1;
    }
    memcpy(b->pos, s, n);
    b->pos += n;
    return 0;
}

static int
unsupported(const char *key, PyObject *v)
{
    PyErr_Format(PyExc_TypeError, "_lpaccel: %s: unsupported type %.100s", key,
                 Py_TYPE(v)->tp_name);
    return -1;
}

/* float(v) for a float field. bool is an int subclass and float(True) == 1.0, as in the
 * pure path. An int too large for a double is left to the pure path (OverflowError there). */
static int
as_double(PyObject *v, const char *key, double *out)
{
    if (PyFloat_CheckExact(v)) {
        *out = PyFloat_AS_DOUBLE(v);
        return 0;
    }
    if (PyLong_CheckExact(v) || PyBool_Check(v)) {
        double d = PyLong_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return unsupported(key, v);
        }
        *out = d;
        return 0;
    }
    return unsupported(key, v);
}

/* An int (or bool: int(True) == 1) that fits in 64 bits; anything larger goes to the pure
 * path rather than growing a bignum formatter here. */
static int
as_ll(PyObject *v, const char *key, long long *out)
{
    if (PyLong_CheckExact(v) || PyBool_Check(v)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return unsupported(key, v);
        }
        *out = x;
        return 0;
    }
    return unsupported(key, v);
}

/* repr(x) for the common telemetry value, a double that is a short decimal (142.548,
 * 60.4, 3110.0), about 10x faster than the general algorithm. Writes into out (>= 24 bytes)
 * and returns the length, or 0 when x is not such a value and dtoa must do it.
 *
 * Why it is exactly repr(x): repr is the shortest decimal string that reads back as x. For
 * 1e-4 <= |x| and |x| * 10**k < 1e15, the reals that round to x span less than 10**-k, so at
 * most one k-decimal number n / 10**k reads back as x, and floor(|x| * 10**k + 0.5) finds it
 * (the product is within 0.2 of n). `n / 10**k == |x|` is that read-back: n and 10**k are
 * exact doubles and IEEE division rounds correctly, as strtod does. The first k that works
 * gives the shortest digits, and in this magnitude range repr uses fixed notation, which is
 * the text written here. tests/uplink/test_lineproto_accel.py checks it against repr. */
static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};

static size_t
fast_repr(double x, char *out)
{
    double ax = fabs(x);
    if (!(ax >= 1e-4 && ax < 1e15)) { /* also false for NaN; zero goes to dtoa */
        return 0;
    }
    for (int k = 0; k < (int)(sizeof POW10 / sizeof POW10[0]); k++) {
        double y = ax * POW10[k];
        if (y >= 1e15) {
            return 0;
        }
        double n = floor(y + 0.5); /* y < 2**50, so y + 0.5 is exact */
        if (n / POW10[k] != ax) {
            continue;
        }
        char rev[20]; /* n's digits, least significant first; n < 1e15 */
        int nd = 0;
        unsigned long long u = (unsigned long long)n;
        do {
            rev[nd++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        char *p = out;
        if (x < 0) {
            *p++ = '-';
        }
        if (k == 0) { /* whole: "3110.0" */
            while (nd) {
                *p++ = rev[--nd];
            }
            *p++ = '.';
            *p++ = '0';
        }
        else if (nd <= k) { /* below 1: "0.05" */
            *p++ = '0';
            *p++ = '.';
            for (int z = k - nd; z > 0; z--) {
                *p++ = '0';
            }
            while (nd) {
                *p++ = rev[--nd];
            }
        }
        else { /* "142.548" */
            while (nd > k) {
                *p++ = rev[--nd];
            }
            *p++ = '.';
            while (nd) {
                *p++ = rev[--nd];
            }
        }
        return (size_t)(p - out);
    }
    return 0;
}

/* `key` is ",name=": every field is written with a leading comma and the first one is
 * dropped at the end, since which field comes first depends on which are present. */
static int
put_float(Buf *b, const char *key, double x)
{
    char fast[24]; /* "-" + 15 digits + "0." + zeros: k <= 8 keeps it under 24 */
    size_t n;
    if (!isfinite(x)) {
        return 0; /* InfluxDB rejects nan/inf: the pure path omits the field too */
    }
    if (put(b, key, strlen(key)) < 0) {
        return -1;
    }
    if ((n = fast_repr(x, fast)) > 0) {
        return put(b, fast, n);
    }
    /* Everything else: exactly what float.__repr__ calls ("-0.0", "1e+16", "5e-324"). */
    char *s = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL) {
        return -1;
    }
    int rc = put(b, s, strlen(s));
    PyMem_Free(s);
    return rc;
}

static int
put_int(Buf *b, const char *key, long long x)
{
    char digits[24]; /* 19 digits, a sign and the "i" suffix */
    char *p = digits + sizeof digits;
    /* Work in unsigned so LLONG_MIN's magnitude does not overflow. */
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    *--p = 'i';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0) {
        *--p = '-';
    }
    if (put(b, key, strlen(key)) < 0) {
        return -1;
    }
    return put(b, p, (size_t)(digits + sizeof digits - p));
}

static int
float_field(Buf *b, const char *key, PyObject *v)
{
    double x;
    if (v == Py_None) {
        return 0;
    }
    if (as_double(v, key, &x) < 0) {
        return -1;
    }
    return put_float(b, key, x);
}

/* max() of a temperatures tuple, with max()'s own semantics: the first item wins unless a
 * later one compares greater, so a leading NaN stays the max (and the field is omitted)
 * while a later NaN is skipped. Comparing the doubles gives the same answer as Python's
 * exact int/float comparison, because rounding an int to a double never reverses an order. */
static int
max_field(Buf *b, const char *key, PyObject *tup)
{
    if (!PyTuple_CheckExact(tup)) {
        return unsupported(key, tup);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    if (n == 0) {
        return 0;
    }
    double best = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double x;
        if (as_double(PyTuple_GET_ITEM(tup, i), key, &x) < 0) {
            return -1;
        }
        if (i == 0 || x > best) {
            best = x;
        }
    }
    return put_float(b, key, best);
}

/* int(min(fans)) for a tuple of ints; floats in it go to the pure path (int() truncation
 * of a NaN or inf fan reading is an error there, and should stay so). */
static int
min_field(Buf *b, const char *key, PyObject *tup)
{
    if (!PyTuple_CheckExact(tup)) {
        return unsupported(key, tup);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    if (n == 0) {
        return 0;
    }
    long long best = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long long x;
        if (as_ll(PyTuple_GET_ITEM(tup, i), key, &x) < 0) {
            return -1;
        }
        if (i == 0 || x < best) {
            best = x;
        }
    }
    return put_int(b, key, best);
}

/* int(uptime): ints as they are, finite floats truncated toward zero like int() does
 * (every double of magnitude >= 2**52 is already whole, so the cast is exact). */
static int
uptime_field(Buf *b, const char *key, PyObject *v)
{
    long long x;
    if (v == Py_None) {
        return 0;
    }
    if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        if (!(d >= -0x1p63 && d < 0x1p63)) { /* also false for NaN */
            return unsupported(key, v);
        }
        return put_int(b, key, (long long)d);
    }
    if (as_ll(v, key, &x) < 0) {
        return -1;
    }
    return put_int(b, key, x);
}

/* state_code and pool_ok arrive already computed by Python: a plain int, or None when the
 * field is omitted. A bool would print as "Truei" in the pure path, so it is refused. */
static int
code_field(Buf *b, const char *key, PyObject *v)
{
    long long x;
    if (v == Py_None) {
        return 0;
    }
    if (!PyLong_CheckExact(v)) {
        return unsupported(key, v);
    }
    if (as_ll(v, key, &x) < 0) {
        return -1;
    }
    return put_int(b, key, x);
}

PyDoc_STRVAR(asic_fields_doc,
"asic_fields(hashrate_ths, hashrate_nominal_ths, power_w, power_limit_w,\n"
"            temps_board, temps_chip, temps_inlet, fans_rpm, uptime_s,\n"
"            state_code, pool_ok, errors) -> str\n"
"\n"
"The field set of an `asic` line, comma-separated, exactly as the pure-Python\n"
"encoder writes it. Raises TypeError for anything it does not handle; the caller\n"
"then uses the pure-Python encoder.");

/* METH_FASTCALL with positional arguments only: argument parsing would otherwise cost a
 * noticeable share of the call. */
static PyObject *
asic_fields(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    char text[BUF_SIZE];
    Buf b = {text, text + sizeof text};

    if (nargs != 12) {
        PyErr_Format(PyExc_TypeError, "asic_fields() takes 12 arguments (%zd given)", nargs);
        return NULL;
    }
    /* Same order as the pure encoder: the field order is part of the byte-identical output. */
    if (float_field(&b, ",hashrate_ths=", args[0]) < 0
        || float_field(&b, ",hashrate_nominal_ths=", args[1]) < 0
        || float_field(&b, ",power_w=", args[2]) < 0
        || float_field(&b, ",power_limit_w=", args[3]) < 0
        || max_field(&b, ",temp_board_max_c=", args[4]) < 0
        || max_field(&b, ",temp_chip_max_c=", args[5]) < 0
        || max_field(&b, ",temp_inlet_max_c=", args[6]) < 0
        || min_field(&b, ",fan_min_rpm=", args[7]) < 0
        || uptime_field(&b, ",uptime_s=", args[8]) < 0
        || code_field(&b, ",state_code=", args[9]) < 0
        || code_field(&b, ",pool_ok=", args[10]) < 0) {
        return NULL;
    }
    /* len(errors): only the count is written, the error texts never are. */
    Py_ssize_t n_errors = PyObject_Size(args[11]);
    if (n_errors < 0 || put_int(&b, ",error_count=", (long long)n_errors) < 0) {
        return NULL;
    }
    /* error_count is always present, so there is a leading comma to drop. */
    return PyUnicode_DecodeASCII(text + 1, b.pos - text - 1, NULL);
}

static PyMethodDef lpaccel_methods[] = {
    {"asic_fields", (PyCFunction)(void (*)(void))asic_fields, METH_FASTCALL, asic_fields_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef lpaccel_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kuat.uplink._lpaccel",
    .m_doc = "Optional C accelerator for kuat.uplink.lineproto (numeric asic fields only).",
    .m_size = 0,
    .m_methods = lpaccel_methods,
};

PyMODINIT_FUNC
PyInit__lpaccel(void)
{
    return PyModuleDef_Init(&lpaccel_module);
}
