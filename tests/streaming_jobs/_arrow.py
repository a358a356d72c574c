"""What pyspark's Arrow serializer makes of a frame a Python worker returns (no SparkSession).

``mapInPandas`` and ``applyInPandasWithState`` hand each returned frame to
``ArrowStreamPandasUDFSerializer``, which converts it column by column to the declared
Spark schema. Running that conversion here shows, in a unit test, what would fail the
micro-batch on the real job (e.g. pyarrow 26's ``ChunkedArray`` for a float column
declared ``string``).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from pyspark.sql.pandas.serializers import ArrowStreamPandasUDFSerializer
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

_SIMPLE: dict[str, DataType] = {
    "boolean": BooleanType(),
    "string": StringType(),
    "long": LongType(),
    "int": IntegerType(),
    "double": DoubleType(),
    "timestamp": TimestampType(),
    "binary": BinaryType(),
}


def _type(text: str) -> DataType:
    if text.startswith("array<") and text.endswith(">"):
        return ArrayType(_type(text[len("array<") : -1]))
    return _SIMPLE[text]


def struct_of(ddl: str) -> StructType:
    """The Spark schema of a flat DDL string such as ``"ok boolean, ids array<long>"``."""
    fields = []
    for part in ddl.split(","):
        name, kind = part.split()
        fields.append(StructField(name, _type(kind)))
    return StructType(fields)


def to_arrow(frame: pd.DataFrame, ddl: str) -> list[pa.Array]:
    """Each column of ``frame`` as pyspark would send it back to the JVM; raises as it would."""
    serializer = ArrowStreamPandasUDFSerializer("UTC", True, False, False)
    arrays = []
    for field in struct_of(ddl).fields:
        array = serializer._create_array(frame[field.name], to_arrow_type(field.dataType), field.dataType)
        # StructArray.from_arrays (how the batch is assembled) takes Arrays only.
        assert isinstance(array, pa.Array), f"{field.name}: {type(array).__name__}, not an Array"
        arrays.append(array)
    pa.StructArray.from_arrays(arrays, [f.name for f in struct_of(ddl).fields])
    return arrays
