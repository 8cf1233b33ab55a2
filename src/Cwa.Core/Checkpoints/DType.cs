namespace Cwa.Core.Checkpoints;

/// <summary>Storage dtypes we read and write; names as in the safetensors header.</summary>
public enum DType { F32, F16, BF16, F64 }

public static class DTypeInfo
{
    public static int Size(DType t) => t switch { DType.F32 => 4, DType.F16 => 2, DType.BF16 => 2, DType.F64 => 8, _ => throw new ArgumentOutOfRangeException(nameof(t)) };

    public static string HeaderName(DType t) => t.ToString();

    /// <summary>Parses user-facing names: bf16, bfloat16, f16, fp16, float16, f32, fp32, float32, f64.</summary>
    public static DType Parse(string s) => s.ToLowerInvariant() switch
    {
        "bf16" or "bfloat16" => DType.BF16,
        "f16" or "fp16" or "float16" or "half" => DType.F16,
        "f32" or "fp32" or "float32" or "float" => DType.F32,
        "f64" or "fp64" or "float64" or "double" => DType.F64,
        _ => throw new InputException($"unknown dtype '{s}' (expected bf16, f16, f32 or f64)"),
    };
}
