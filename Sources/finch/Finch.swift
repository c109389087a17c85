@main struct FinchCLI { static func main() {} }
