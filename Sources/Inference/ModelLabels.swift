extension LabelSet {
    /// Names for a model's classes: its labels file, or "class N" for 1000 classes when it names none.
    /// - Throws: the labels file's error (missing, unreadable, malformed).
    public static func of(_ model: ModelDescriptor) throws -> LabelSet {
        try model.labelsPath.map { try LabelSet(path: $0) } ?? LabelSet(names: (0..<1000).map { "class \($0)" })
    }
}

extension ModelDescriptor {
    /// The model at `path` (a sidecar or a network file) and its class names.
    public static func loadWithLabels(path: String) throws -> (model: ModelDescriptor, labels: LabelSet) {
        let model = try ModelDescriptor.load(path: path)
        return (model, try LabelSet.of(model))
    }
}
