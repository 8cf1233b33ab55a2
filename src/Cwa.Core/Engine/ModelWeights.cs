using System.Numerics;
using Cwa.Core.Checkpoints;
using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>One flat row-major array per parameter tensor, in LlamaLayout order. Also used for gradients.</summary>
public sealed class ModelWeights<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly T[][] _data;
    private readonly Dictionary<string, int> _index;

    public ModelConfig Config { get; }
    public IReadOnlyList<ParameterSpec> Specs { get; }

    private ModelWeights(ModelConfig config, IReadOnlyList<ParameterSpec> specs, T[][] data)
    {
        Config = config;
        Specs = specs;
        _data = data;
        _index = new Dictionary<string, int>(specs.Count);
        for (int i = 0; i < specs.Count; i++) _index[specs[i].Name] = i;
    }

    public T[] this[int index] => _data[index];
    public int Count => _data.Length;
    public long ParameterCount => Specs.Sum(s => s.NumElements);

    public int IndexOf(string name) =>
        _index.TryGetValue(name, out int i) ? i : throw new CwaException($"model has no parameter named '{name}'");

    public T[] Get(string name) => _data[IndexOf(name)];

    public static ModelWeights<T> Zeros(ModelConfig config)
    {
        var specs = LlamaLayout.Parameters(config);
        return new ModelWeights<T>(config, specs, specs.Select(s => new T[checked((int)s.NumElements)]).ToArray());
    }

    /// <summary>Converts each tensor from its stored dtype as it is read: never two full copies of the model.</summary>
    public static ModelWeights<T> Load(ModelConfig config, ITensorSource source, Action<string>? onTensor = null)
    {
        var w = Zeros(config);
        for (int i = 0; i < w.Specs.Count; i++)
        {
            var spec = w.Specs[i];
            onTensor?.Invoke(spec.Name);
            if (typeof(T) == typeof(float))
                source.Read(spec.Name, System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(w._data[i].AsSpan()));
            else if (typeof(T) == typeof(double))
                source.Read(spec.Name, System.Runtime.InteropServices.MemoryMarshal.Cast<T, double>(w._data[i].AsSpan()));
            else
                throw new NotSupportedException(typeof(T).Name);
        }
        return w;
    }

    /// <summary>Deterministic random init: N(0, std) for matrices, 1 + 0.1 N(0,1) for norms, 0.1 N(0,1) for biases.</summary>
    public static ModelWeights<T> Random(ModelConfig config, ulong seed, double std = 0.02)
    {
        var w = Zeros(config);
        for (int i = 0; i < w.Specs.Count; i++)
        {
            var rng = SplitMix64.For(seed, i);
            var spec = w.Specs[i];
            bool norm = spec.Role is ParameterRole.InputNorm or ParameterRole.PostAttentionNorm or ParameterRole.FinalNorm;
            var d = w._data[i];
            for (int j = 0; j < d.Length; j++)
                d[j] = T.CreateTruncating(norm ? 1 + 0.1 * rng.NextGaussian() : spec.Is2D ? std * rng.NextGaussian() : 0.1 * rng.NextGaussian());
        }
        return w;
    }

    public ModelWeights<T> ZerosLike() => Zeros(Config);

    /// <summary>Every slot empty: a streamed model binds one block's arrays at a time.</summary>
    internal static ModelWeights<T> Unbound(ModelConfig config)
    {
        var specs = LlamaLayout.Parameters(config);
        return new ModelWeights<T>(config, specs, specs.Select(_ => Array.Empty<T>()).ToArray());
    }

    /// <summary>Makes data the array of tensor index (its length must match); an empty array unbinds it.</summary>
    internal void Bind(int index, T[] data)
    {
        if (data.Length != 0 && data.Length != Specs[index].NumElements)
            throw new ArgumentException($"{Specs[index].Name} needs {Specs[index].NumElements} values, got {data.Length}", nameof(data));
        _data[index] = data;
    }

    public ModelWeights<T> Clone() => new(Config, Specs, _data.Select(a => (T[])a.Clone()).ToArray());

    public void Clear()
    {
        foreach (var a in _data) Array.Clear(a);
    }
}
