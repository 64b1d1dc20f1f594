// Pass (runtime only, run by Session after FuseConvActivation when the direct blocked conv is the
// fast path: kernels::ConvNchwcSupported): the layout choice. Float convs whose channel counts
// are multiples of 16 keep their activations in NCHW16c ([N, C/16, H, W, 16], 5-D tensors)
// between each other, so the blocked kernel reads its input in place and nothing is packed or
// reordered in between; tensors go back to NCHW only where another op reads them.
//
// - A Conv / FusedConv with constant float weights [M, C, KH, KW], group 1, M and C multiples of
//   16 is eligible (with a fused 2x2 MaxPool too: the blocked conv pools its rows in cache; with
//   a separate NchwcMaxPool the Fashion CNN was no faster, 60 ms either way); so is one with at
//   most 8 input channels (a network's first conv), which reads its input as NCHW (nchwc = 2)
//   and writes the blocked layout, so no reorder precedes the blocked region. Eligible convs that
//   read each other's outputs (directly or through a MaxPool) form components; a component is
//   blocked when its convs' work outweighs the reorders at its edges (a lone conv would pay a
//   reorder on both sides for nothing) and padding its channel counts to blocks adds at most
//   options.max_padded_work.
// - A blocked conv becomes FusedConv with attribute nchwc = 1 (or 2): input 0 (unless 2), its
//   residual (input 3) and its output are blocked.
// - A MaxPool (no Indices output) reading a blocked tensor becomes com.quantkit::NchwcMaxPool; a
//   GlobalAveragePool com.quantkit::NchwcGlobalAveragePool, whose [N, C, 1, 1] output is plain.
// - com.quantkit::ToNchwc / FromNchwc nodes convert at the edges: one per tensor, shared by its
//   readers; a blocked tensor that is also a graph output or read by any other op keeps its name
//   for the plain copy.
#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "passes/passes.h"
#include "runtime/kernel.h"

namespace quantkit::passes {
namespace {

constexpr int64_t kBlock = 16;

// What the blocked conv can take of node n: kNot, kBlockedInput, kPlainInput (a network's first
// conv: at most 8 input channels, read as NCHW), or kDepthwise (group = C = M; no residual, no
// fused pool). Channel counts that are not multiples of 16 are padded (PadToBlocks).
enum ConvKind { kNot = 0, kBlockedInput = 1, kPlainInput = 2, kDepthwise = 3 };
constexpr int64_t kMaxPlainInputChannels = 8;
ConvKind FloatConvKind(const Graph& g, const Node& n) {
  const bool conv = (n.IsDefaultDomain() && n.op_type == "Conv") ||
                    (n.domain == rt::kQuantkitDomain && n.op_type == "FusedConv");
  if (!conv || n.outputs.size() != 1 || !n.HasInput(0) || !n.HasInput(1)) return kNot;
  if (n.AttrInt("nchwc", 0) != 0) return kNot;
  const int64_t group = n.AttrInt("group", 1);
  if (g.IsGraphInput(n.inputs[1])) return kNot;
  const Tensor* w = g.FindInitializer(n.inputs[1]);
  if (!w || w->dtype() != DType::kFloat32 || w->rank() != 4) return kNot;
  if (n.HasInput(2)) {
    const Tensor* b = g.FindInitializer(n.inputs[2]);
    if (!b || b->dtype() != DType::kFloat32 || g.IsGraphInput(n.inputs[2])) return kNot;
  }
  if (w->dim(0) <= 0 || w->dim(1) <= 0) return kNot;
  if (group != 1) {
    const bool depthwise = group == w->dim(0) && w->dim(1) == 1 && !n.HasInput(3) && n.AttrInt("max_pool_2x2", 0) == 0;
    return depthwise ? kDepthwise : kNot;
  }
  return w->dim(1) % kBlock != 0 && w->dim(1) <= kMaxPlainInputChannels ? kPlainInput : kBlockedInput;
}

int64_t RoundUpToBlock(int64_t c) { return (c + kBlock - 1) / kBlock * kBlock; }

// A blocked tensor of C channels holds RoundUpToBlock(C), the padding 0 where ToNchwc makes it.
// A conv whose channel counts are not multiples of 16 gets a copy of its weights with zero rows
// for the padded output channels (and zero bias: they compute Clip(0 (+ residual padding))) and
// zero columns for the padded input channels (so whatever those hold adds x * 0: exact for any
// finite x; the padding stays finite as long as the inputs are). A depthwise conv's group becomes
// the padded count.
void PadToBlocks(Graph& g, Node& node, ConvKind kind) {
  const Tensor& w = *g.FindInitializer(node.inputs[1]);
  const int64_t M = w.dim(0), C = w.dim(1), taps = w.dim(2) * w.dim(3);
  const int64_t Mp = RoundUpToBlock(M), Cp = kind == kBlockedInput ? RoundUpToBlock(C) : C;
  if (Mp == M && Cp == C) return;
  std::vector<float> wp(static_cast<size_t>(Mp * Cp * taps), 0.f);
  const float* wd = w.data<float>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) std::copy_n(wd + (m * C + c) * taps, taps, wp.begin() + (m * Cp + c) * taps);
  const std::string wname = g.UniqueName(node.inputs[1] + "_padded");
  g.AddInitializer(wname, Tensor::FromVector<float>(wp, {Mp, Cp, w.dim(2), w.dim(3)}));
  node.inputs[1] = wname;
  if (node.HasInput(2)) {
    const Tensor& b = *g.FindInitializer(node.inputs[2]);
    std::vector<float> bp(static_cast<size_t>(Mp), 0.f);
    std::copy_n(b.data<float>(), M, bp.begin());
    const std::string bname = g.UniqueName(node.inputs[2] + "_padded");
    g.AddInitializer(bname, Tensor::FromVector<float>(bp, {Mp}));
    node.inputs[2] = bname;
  }
  if (kind == kDepthwise) node.SetAttrInt("group", Mp);
  // The real channel counts: kernels may skip the padding's multiply-adds (each adds an exact 0).
  if (Mp != M) node.SetAttrInt("nchwc_out_channels", M);
  if (Cp != C && kind == kBlockedInput) node.SetAttrInt("nchwc_in_channels", C);
}

bool IsPlainMaxPool(const Node& n) {
  return n.IsDefaultDomain() && n.op_type == "MaxPool" && n.inputs.size() == 1 &&
         (n.outputs.size() == 1 || (n.outputs.size() == 2 && n.outputs[1].empty())) &&
         n.AttrInt("storage_order", 0) == 0 && n.AttrInts("kernel_shape").size() == 2;
}

bool IsGlobalAveragePool(const Node& n) {
  return n.IsDefaultDomain() && n.op_type == "GlobalAveragePool" && n.inputs.size() == 1 && n.outputs.size() == 1;
}

}  // namespace

Status BlockConvChannels(Model& model, const BlockLayoutOptions& options, std::string* report) {
  Graph& g = model.graph;
  const int n = static_cast<int>(g.nodes.size());
  DefUse du(g);
  std::vector<ConvKind> kind(n, kNot);
  std::vector<bool> eligible(n, false);
  for (int i = 0; i < n; ++i) {
    kind[i] = FloatConvKind(g, g.nodes[i]);
    eligible[i] = kind[i] != kNot;
  }
  // The inputs a blocked conv reads blocked: 0 (unless plain) and the residual, 3.
  auto blocked_slots = [&](int i) {
    return kind[i] == kPlainInput ? std::vector<size_t>{3} : std::vector<size_t>{0, 3};
  };
  // The eligible convs feeding value v, directly or through one MaxPool.
  auto conv_source = [&](const std::string& v) {
    int p = du.Producer(v);
    if (p >= 0 && IsPlainMaxPool(g.nodes[p])) p = du.Producer(g.nodes[p].inputs[0]);
    return p >= 0 && eligible[p] ? p : -1;
  };
  // Components: eligible convs joined where one reads another's output (input 0 or the residual,
  // directly or through a MaxPool).
  std::vector<int> parent(n);
  for (int i = 0; i < n; ++i) parent[i] = i;
  auto find = [&](int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  std::vector<bool> linked(n, false);
  for (int i = 0; i < n; ++i) {
    if (!eligible[i]) continue;
    const Node& c = g.nodes[i];
    for (size_t slot : blocked_slots(i)) {
      if (!c.HasInput(slot)) continue;
      const int src = conv_source(c.inputs[slot]);
      if (src < 0) continue;
      parent[find(i)] = find(src);
      linked[i] = linked[src] = true;
    }
  }
  // Per component: the work of its convs (M C KH KW multiply-adds per output pixel) and the
  // channels of the tensors that would be reordered at its edges (read by a member but made
  // outside; made by a member, or by a MaxPool of one, and read by another op or a graph output).
  // A component is blocked when the work is at least kWorkPerReorderedChannel per reordered
  // channel (per pixel, sizes ignored): MobileNet-style blocks, where every depthwise conv between
  // two pointwise ones needs a reorder on both sides, were slower blocked (MobileNetV2 9.0 -> 9.8
  // ms, M-LSD 155 -> 173 ms at one thread); ResNets (one reorder of 64 channels, 20-50 convs)
  // are far above it.
  constexpr double kWorkPerReorderedChannel = 200;
  std::unordered_map<int, double> work, reordered;
  std::unordered_map<int, double> macs, padded_macs;  // per image, where shapes are known (else per pixel)
  std::unordered_set<std::string> counted;
  auto member_reads = [&](int root, int consumer, const std::string& v) {
    if (consumer < 0 || !eligible[consumer] || !linked[consumer] || find(consumer) != root) return false;
    const Node& c = g.nodes[consumer];
    return (kind[consumer] != kPlainInput && c.Input(0) == v) || c.Input(3) == v;
  };
  auto count_outputs = [&](int root, const std::string& v, double channels, bool pools_blocked) {
    bool plain_reader = g.IsGraphOutput(v);
    for (int k : du.Consumers(v)) {
      const Node& c = g.nodes[k];
      if (member_reads(root, k, v)) continue;
      if (pools_blocked && c.Input(0) == v && (IsPlainMaxPool(c) || IsGlobalAveragePool(c))) continue;
      plain_reader = true;
    }
    if (plain_reader && counted.insert(v).second) reordered[root] += channels;
  };
  // The channels the kernels compute of c: whole blocks, or up to a half block where they skip the rest.
  auto computed = [&](int64_t c) {
    constexpr int64_t kHalf = kBlock / 2;
    return options.half_blocks_skipped ? (c + kHalf - 1) / kHalf * kHalf : RoundUpToBlock(c);
  };
  for (int i = 0; i < n; ++i) {
    if (!eligible[i] || !linked[i]) continue;
    const int root = find(i);
    const Node& c = g.nodes[i];
    const Tensor* w = g.FindInitializer(c.inputs[1]);
    work[root] += static_cast<double>(w->numel());
    double pixels = 1;
    if (const ValueInfo* out = g.FindValueInfo(c.outputs[0]); out && out->has_shape) {
      for (size_t d = 2; d < out->shape.size(); ++d) {
        if (out->shape[d].known()) pixels *= static_cast<double>(out->shape[d].value);
      }
    }
    const int64_t padded_in = kind[i] == kBlockedInput ? computed(w->dim(1)) : w->dim(1);
    macs[root] += pixels * static_cast<double>(w->numel());
    padded_macs[root] += pixels * static_cast<double>(computed(w->dim(0)) * padded_in * w->dim(2) * w->dim(3));
    for (size_t slot : blocked_slots(i)) {
      if (!c.HasInput(slot)) continue;
      const int src = conv_source(c.inputs[slot]);
      if ((src < 0 || find(src) != root) && counted.insert(c.inputs[slot]).second) {
        reordered[root] += static_cast<double>(slot == 0 && kind[i] != kDepthwise ? w->dim(1) : w->dim(0));
      }
    }
    count_outputs(root, c.outputs[0], static_cast<double>(w->dim(0)), true);
    for (int k : du.Consumers(c.outputs[0])) {
      if (IsPlainMaxPool(g.nodes[k])) count_outputs(root, g.nodes[k].outputs[0], static_cast<double>(w->dim(0)), false);
    }
  }
  // And when the zero channels that pad its counts to blocks of 16 multiply its work by at most
  // options.max_padded_work.
  auto pays = [&](int root) {
    return work[root] >= kWorkPerReorderedChannel * reordered[root] &&
           padded_macs[root] <= options.max_padded_work * macs[root];
  };
  std::vector<bool> blocked(n, false);
  for (int i = 0; i < n; ++i) blocked[i] = eligible[i] && linked[i] && pays(find(i));
  if (report) {
    std::unordered_map<int, int> members;
    for (int i = 0; i < n; ++i)
      if (eligible[i] && linked[i]) ++members[find(i)];
    for (int i = 0; i < n; ++i) {
      if (!eligible[i] || !linked[i] || find(i) != i) continue;
      *report += fmt::format(
          "layout     {} convs from '{}': {}, work {:.3g} (vs {} x {:.0f} reordered channels), padded {:.2f}x (limit "
          "{:.2f}x)\n",
          members[i], g.nodes[i].name, blocked[i] ? "NCHW16c" : "NCHW", work[i], kWorkPerReorderedChannel,
          reordered[i], padded_macs[i] / macs[i], options.max_padded_work);
    }
  }
  bool any = false;
  for (int i = 0; i < n; ++i) any = any || blocked[i];
  if (!any) return Status::Ok();

  std::unordered_map<std::string, std::string> blocked_name;  // plain name -> its blocked tensor
  std::unordered_map<std::string, int64_t> channels;          // plain name -> its channels (unpadded)
  std::unordered_map<std::string, std::string> to_blocked;    // plain tensor -> its ToNchwc copy
  std::unordered_set<std::string> needs_plain;                // blocked tensors read as plain
  std::vector<Node> added;
  auto block_input = [&](Node& node, size_t slot) {
    const std::string v = node.inputs[slot];
    if (auto it = blocked_name.find(v); it != blocked_name.end()) {
      node.inputs[slot] = it->second;
      return;
    }
    auto [it, inserted] = to_blocked.emplace(v, "");
    if (inserted) {
      it->second = g.UniqueName(v + "_nchwc16_in");
      Node r;
      r.name = g.UniqueName("ToNchwc_" + v);
      r.op_type = "ToNchwc";
      r.domain = rt::kQuantkitDomain;
      r.inputs = {v};
      r.outputs = {it->second};
      added.push_back(std::move(r));
    }
    node.inputs[slot] = it->second;
  };
  auto block_output = [&](Node& node, int64_t c) {
    const std::string v = node.outputs[0];
    channels[v] = c;
    const std::string b = g.UniqueName(v + "_nchwc16");
    blocked_name[v] = b;
    node.outputs[0] = b;
    if (g.IsGraphOutput(v)) needs_plain.insert(v);
  };
  // Nodes are in topological order: every blocked tensor is named before it is read.
  for (int i = 0; i < n; ++i) {
    Node& node = g.nodes[i];
    if (blocked[i]) {
      const int64_t out_channels = g.FindInitializer(node.inputs[1])->dim(0);
      PadToBlocks(g, node, kind[i]);
      if (kind[i] != kPlainInput) block_input(node, 0);
      if (node.HasInput(3)) block_input(node, 3);
      if (node.op_type == "Conv") {
        node.op_type = "FusedConv";
        node.domain = rt::kQuantkitDomain;
      }
      node.SetAttrInt("nchwc", kind[i] == kPlainInput ? 2 : 1);
      block_output(node, out_channels);
      continue;
    }
    const bool reads_blocked = !node.inputs.empty() && blocked_name.count(node.inputs[0]) != 0;
    if (reads_blocked && IsPlainMaxPool(node)) {
      const int64_t c = channels[node.inputs[0]];
      node.inputs[0] = blocked_name[node.inputs[0]];
      node.op_type = "NchwcMaxPool";
      node.domain = rt::kQuantkitDomain;
      node.outputs.resize(1);
      block_output(node, c);
      continue;
    }
    if (reads_blocked && IsGlobalAveragePool(node)) {
      node.SetAttrInt("channels", channels[node.inputs[0]]);
      node.inputs[0] = blocked_name[node.inputs[0]];
      node.op_type = "NchwcGlobalAveragePool";
      node.domain = rt::kQuantkitDomain;
      continue;
    }
    for (const std::string& v : node.inputs)
      if (blocked_name.count(v)) needs_plain.insert(v);
    // Subgraphs reading a blocked tensor from the outer scope see the plain copy by its name.
    for (const std::string& v : NodeReads(node))
      if (blocked_name.count(v)) needs_plain.insert(v);
  }
  for (const std::string& v : needs_plain) {
    Node r;
    r.name = g.UniqueName("FromNchwc_" + v);
    r.op_type = "FromNchwc";
    r.domain = rt::kQuantkitDomain;
    r.inputs = {blocked_name[v]};
    r.outputs = {v};
    r.SetAttrInt("channels", channels[v]);
    added.push_back(std::move(r));
  }
  for (Node& r : added) g.nodes.push_back(std::move(r));
  return TopologicalSort(g);
}

}  // namespace quantkit::passes
