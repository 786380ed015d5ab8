from typing_extensions import Buffer

BEST_LEVEL: int

def linear16(src: Buffer, dst: Buffer, signed: bool, bits_stored: int, a: float, b: float,
             level: int, /) -> None: ...
def lookup16(src: Buffer, dst: Buffer, table: Buffer, /) -> None: ...
