import XCTest
@testable import FinchTokenizer
final class TokenizerPlaceholderTests: XCTestCase { func testPlaceholder() {} }
