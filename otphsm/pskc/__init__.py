"""Reading a vendor's PSKC file (RFC 6030) of key fobs: `reader` decrypts and checks every key
package for the fob use cases, `checks` the file's shape before python-pskc reads it."""

from otphsm.pskc.checks import PskcProblem, PskcRefused, Shape, check_structure
from otphsm.pskc.reader import MAX_FILE_BYTES, import_pskc, read_pskc, read_pskc_file

__all__ = [
    "MAX_FILE_BYTES",
    "PskcProblem",
    "PskcRefused",
    "Shape",
    "check_structure",
    "import_pskc",
    "read_pskc",
    "read_pskc_file",
]
