using Cwa.Core.Models;

namespace Cwa.Core.Engine;

/// <summary>
/// Sees activations during the forward pass: the input of every linear layer and the output of every
/// mlp.down_proj. Used by Wanda (input-channel norms) and super-weight detection. Spans are [tokens, features]
/// row-major; padding rows are included and flagged false in tokenIsReal.
/// </summary>
public interface IActivationObserver<T>
{
    void OnLinearInput(ParameterSpec spec, ReadOnlySpan<T> x, int tokens, int features, ReadOnlySpan<bool> tokenIsReal);
    void OnLinearOutput(ParameterSpec spec, ReadOnlySpan<T> y, int tokens, int features, ReadOnlySpan<bool> tokenIsReal);
}
